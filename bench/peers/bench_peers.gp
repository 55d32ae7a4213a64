# weft vs its peer (PyTorch / scikit-learn) per hot path, 1 thread, log scale: the time per call
# of each side from scripts/bench (CPU time of the calling thread, minimum over the rounds).
# Run by scripts/bench at the end of a run (when gnuplot is installed) with
# data=<build>/figure-data (where bench_table.py writes bench_peers.csv), out=<build>/bench_peers.png;
# docs/figures/bench_peers.png is a copy of one such render. Kept out of docs/figures/src so that
# scripts/figures (the reproduce figures) does not expect bench data.
set terminal pngcairo size 1000,560 font "DejaVu Sans,10"
set output out
set datafile separator ","
set logscale y
set format y "10^{%L}"
set grid ytics
set ylabel "seconds per call (log scale)"
set title "weft vs peer per hot path, 1 thread (scripts/bench)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -35 left noenhanced
set key top left
set yrange [1e-5:10]
f = data."/bench_peers.csv"
plot f skip 1 using 3:xtic(1) title "weft" lc rgb "#1f77b4", \
     f skip 1 using 4 title "peer (PyTorch / scikit-learn)" lc rgb "#d62728"
