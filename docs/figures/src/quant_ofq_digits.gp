# Oscillation rate per QAT epoch of model A in examples/quant_ofq_digits (2-bit W1, W2 of an MLP
# 64-128-128-10 on digits), mean over seeds: LSQ, StatsQ and StatsQ + CGA (CGA from epoch 60).
# osc_rate = oscillation events / (weights x steps) within the epoch, on integer codes.
# Run by scripts/figures with data=<figure-data dir>, out=<png>.
set terminal pngcairo size 900,520 font "DejaVu Sans,11"
set output out
set datafile separator ","
set key bottom left
set grid
set logscale y
set format y "10^{%L}"
set xlabel "QAT epoch (23 steps each)"
set ylabel "osc\\_rate (events per weight per step)"
set xrange [1:80]
set yrange [1e-6:1e-2]
set title "weft quant: oscillation of 2-bit weights during QAT (mean over seeds)"
f = data."/quant_ofq_osc.csv"
set arrow from 60, graph 0 to 60, graph 1 nohead dt 2 lc rgb "#555555"
set label "CGA on" at 60.5, graph 0.92 tc rgb "#555555"
set object 1 rect from 72, graph 0 to 80, graph 1 fc rgb "#eeeeee" fs solid 0.5 noborder behind
set label "window" at 72.5, graph 0.05 tc rgb "#555555"
plot f skip 1 using 1:($2 > 0 ? $2 : 1/0) with lines lw 2 lc rgb "#1f77b4" title "LSQ (per row)", \
     f skip 1 using 1:($3 > 0 ? $3 : 1/0) with lines lw 2 lc rgb "#ff7f0e" title "StatsQ", \
     f skip 1 using 1:($4 > 0 ? $4 : 1/0) with lines lw 2 lc rgb "#2ca02c" title "StatsQ + CGA (BR 0.005; = StatsQ before epoch 60)"
