# Error-vector alignment per hidden layer during training, with and without Jacobian homeostasis
# (examples/ep_digits, V4: 64-32-32-10, alpha = 90, hEP N = 2): mean per-sample cos(delta_l, e_l)
# on 64 test digits, one line per seed (10..19, the asserted run) and layer. Run by scripts/figures with data=, out=.
set terminal pngcairo size 900,520 font "DejaVu Sans,11"
set output out
set datafile separator ","
set key bottom left
set grid
set xlabel "epoch"
set ylabel "cos(delta_l, e_l), 64 test digits"
set yrange [-0.2:1.05]
set title "holomorphic EP, independent feedback: error alignment per layer"
f = data."/ep_homeostasis.csv"
set style line 1 lc rgb "#1f77b4" lw 1
set style line 2 lc rgb "#1f77b4" lw 1 dt 3
set style line 3 lc rgb "#d62728" lw 1
set style line 4 lc rgb "#d62728" lw 1 dt 3
plot for [s=10:19] f skip 1 using (($1==s && $2==3) ? $3 : 1/0):4 with linespoints ls 1 pt 7 ps 0.5 title (s==10 ? "lambda 3, layer 1" : ""), \
     for [s=10:19] f skip 1 using (($1==s && $2==3) ? $3 : 1/0):5 with linespoints ls 2 pt 7 ps 0.5 title (s==10 ? "lambda 3, layer 2" : ""), \
     for [s=10:19] f skip 1 using (($1==s && $2==0) ? $3 : 1/0):4 with linespoints ls 3 pt 7 ps 0.5 title (s==10 ? "lambda 0, layer 1" : ""), \
     for [s=10:19] f skip 1 using (($1==s && $2==0) ? $3 : 1/0):5 with linespoints ls 4 pt 7 ps 0.5 title (s==10 ? "lambda 0, layer 2" : "")
