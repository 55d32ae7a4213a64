# Weight compander on the digits MLP 64-128-128-10 (examples/reparam_compander_digits):
# left, histogram of the first-layer weights at the end of training (seed 0) for the baseline,
# the fixed compander a = b = 0.5 and the learnable one, with the initial w0 (identical in every
# arm); right, max |w| over all layers per epoch (3 seeds). Run by scripts/figures with
# data=<figure-data dir>, out=<png>. Series: reparam_compander_w1.csv (arm,w; arm 0 = w0,
# 1 = A, 2 = B, 3 = C) and reparam_compander_epochs.csv (arm,seed,epoch,max_abs_w,...).
set terminal pngcairo size 1200,500 font "DejaVu Sans,11"
set output out
set datafile separator ","
w1 = data."/reparam_compander_w1.csv"
ep = data."/reparam_compander_epochs.csv"
bound = 0.5 * pi / 2
set style line 1 lc rgb "#7f7f7f" lw 1.5 dt 2
set style line 2 lc rgb "#1f77b4" lw 2
set style line 3 lc rgb "#d62728" lw 2
set style line 4 lc rgb "#2ca02c" lw 2
set multiplot layout 1,2 title "Weight compander on digits (MLP 64-128-128-10, SGD m = 0.9, 60 epochs)"

width = 0.02
bin(x) = width * floor(x / width) + width / 2.0
set title "first-layer weights W1 at the end (seed 0)"
set xlabel "w"
set ylabel "count per bin of 0.02"
set xrange [-0.85:0.85]
set logscale y
set yrange [0.8:20000]
set grid
set key top left
set arrow 1 from -bound, graph 0 to -bound, graph 1 nohead lc rgb "#d62728" dt 3
set arrow 2 from bound, graph 0 to bound, graph 1 nohead lc rgb "#d62728" dt 3
set label 1 "B bound 0.5 pi/2" at bound, graph 0.5 right offset -0.5,0 tc rgb "#d62728"
plot w1 skip 1 using (column(1) == 0 ? bin($2) : 1/0):(1.0) smooth frequency with steps ls 1 title "w0 (init)", \
     w1 skip 1 using (column(1) == 1 ? bin($2) : 1/0):(1.0) smooth frequency with steps ls 2 title "A baseline", \
     w1 skip 1 using (column(1) == 2 ? bin($2) : 1/0):(1.0) smooth frequency with steps ls 3 title "B WC a = b = 0.5", \
     w1 skip 1 using (column(1) == 3 ? bin($2) : 1/0):(1.0) smooth frequency with steps ls 4 title "C learnable WC"

unset arrow 1
unset arrow 2
unset label 1
unset logscale y
set title "max |w| over all layers, per epoch (3 seeds)"
set xlabel "epoch"
set ylabel "max |w|"
set xrange [0:61]
set yrange [0:0.95]
set key bottom right
plot for [s=0:2] ep skip 1 using (column(1) == 1 && column(2) == s ? $3 : 1/0):4 with lines ls 2 title (s == 0 ? "A baseline" : ""), \
     for [s=0:2] ep skip 1 using (column(1) == 2 && column(2) == s ? $3 : 1/0):4 with lines ls 3 title (s == 0 ? "B WC a = b = 0.5" : ""), \
     for [s=0:2] ep skip 1 using (column(1) == 3 && column(2) == s ? $3 : 1/0):4 with lines ls 4 title (s == 0 ? "C learnable WC" : ""), \
     bound with lines lc rgb "#d62728" dt 3 title "B bound 0.5 pi/2"
unset multiplot
