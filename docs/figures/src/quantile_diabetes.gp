# Coverage of the central intervals on the diabetes test rows, before and after split conformal
# calibration (examples/quantile_diabetes: global medium aggregation + sort, then CQR on the
# calibration rows + sort). Left: nominal vs empirical coverage; right: empirical minus nominal.
# Means over the splits, error bars +-1 standard error. Run by scripts/figures with
# data=<figure-data dir>, out=<png>.
set terminal pngcairo size 1100,520 font "DejaVu Sans,11"
set output out
set datafile separator ","
set grid
f = data."/quantile_diabetes_coverage.csv"
set multiplot layout 1,2 title "weft quantile: diabetes (19 levels, 50 splits of 221 / 110 / 111 rows), coverage before and after CQR"
set key top left
set xlabel "nominal coverage 1 - alpha"
set ylabel "empirical test coverage (mean over splits)"
set xrange [0.05:0.95]
set yrange [0.05:0.95]
set size ratio -1
plot x with lines dt 2 lc rgb "#555555" title "nominal", \
     f skip 1 using 1:2:($4/sqrt($6)) with yerrorlines lw 2 pt 7 lc rgb "#1f77b4" title "medium + sort (before)", \
     f skip 1 using 1:3:($5/sqrt($6)) with yerrorlines lw 2 pt 5 lc rgb "#d62728" title "after CQR + sort"
set size noratio
set key top right
set ylabel "empirical - nominal coverage"
set yrange [-0.04:0.04]
plot 0 with lines dt 2 lc rgb "#555555" notitle, \
     f skip 1 using 1:($2-$1):($4/sqrt($6)) with yerrorlines lw 2 pt 7 lc rgb "#1f77b4" title "medium + sort (before)", \
     f skip 1 using 1:($3-$1):($5/sqrt($6)) with yerrorlines lw 2 pt 5 lc rgb "#d62728" title "after CQR + sort"
unset multiplot
