# PRESTO coefficient paths over lambda (examples/ordinal_presto_sim, examples/ordinal_diabetes).
# Left: psi (original scale) of replication 0 of the P7 sparse design, one line per coefficient,
# coloured by block (psi_0 = beta_0, psi_1 = beta_1 - beta_0, psi_2 = beta_2 - beta_1); the
# dashed line is λ* from 5-fold CV. Middle: that replication's fold-averaged Brier score.
# Right: the diabetes-ordinal path (standardised scale). Run by scripts/figures with
# data=<figure-data dir>, out=<png>.
set terminal pngcairo size 1500,480 font "DejaVu Sans,10"
set output out
set datafile separator ","
sim = data."/ordinal_presto_sim_path.csv"
cv = data."/ordinal_presto_sim_cv.csv"
dia = data."/ordinal_diabetes_path.csv"
diacv = data."/ordinal_diabetes_cv.csv"
set logscale x
set xrange [*:*] reverse
set grid
set key bottom left
set style line 1 lc rgb "#1f77b4" lw 1.5
set style line 2 lc rgb "#ff7f0e" lw 1.5
set style line 3 lc rgb "#d62728" lw 1.5
stats cv skip 1 using ($3 == 1 ? $1 : NaN) nooutput name "SIM"
stats diacv skip 1 using ($3 == 1 ? $1 : NaN) nooutput name "DIA"
set multiplot layout 1,3 title "PRESTO: lasso on psi_k = beta_k - beta_{k-1} shrinks the K-1 boundaries towards proportional odds"
set title "P7 simulation, replication 0 (n = 2500, p = 10, K = 4)"
set xlabel "λ / λ_{max}"
set ylabel "psi (original scale)"
set arrow 1 from SIM_min, graph 0 to SIM_min, graph 1 nohead dt 2 lc rgb "black"
plot for [c=2:11] sim skip 1 using 1:c with lines ls 1 title (c == 2 ? "psi_0 = beta_0" : ""), \
     for [c=12:21] sim skip 1 using 1:c with lines ls 2 title (c == 12 ? "psi_1 = beta_1 - beta_0" : ""), \
     for [c=22:31] sim skip 1 using 1:c with lines ls 3 title (c == 22 ? "psi_2 = beta_2 - beta_1 (rare boundary)" : "")
set title "the same replication: 5-fold CV"
set ylabel "mean out-of-fold Brier score"
set key top right
plot cv skip 1 using 1:2 with linespoints lc rgb "black" pt 7 ps 0.6 title "mean Brier", \
     cv skip 1 using ($3 == 1 ? $1 : NaN):2 with points pt 6 ps 2.5 lc rgb "#d62728" title "λ* (largest λ at the minimum)"
unset arrow 1
set title "diabetes-ordinal (442 rows, 4 classes, 14 rare)"
set ylabel "psi (standardised features)"
set key bottom left
set arrow 2 from DIA_min, graph 0 to DIA_min, graph 1 nohead dt 2 lc rgb "black"
plot for [c=2:11] dia skip 1 using 1:c with lines ls 1 title (c == 2 ? "psi_0" : ""), \
     for [c=12:21] dia skip 1 using 1:c with lines ls 2 title (c == 12 ? "psi_1" : ""), \
     for [c=22:31] dia skip 1 using 1:c with lines ls 3 title (c == 22 ? "psi_2 (rare boundary)" : "")
unset multiplot
