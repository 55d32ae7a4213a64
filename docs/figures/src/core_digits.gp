# Test accuracy per epoch of the two core examples (examples/mlp_digits, examples/vit_digits),
# one line per seed. Run by scripts/figures with data=<figure-data dir>, out=<png>.
set terminal pngcairo size 900,520 font "DejaVu Sans,11"
set output out
set datafile separator ","
set key bottom right
set grid
set xlabel "epoch"
set ylabel "test accuracy (360 digits)"
set yrange [0.80:1.0]
set title "weft core: digits classification, test accuracy per epoch"
mlp = data."/core_mlp_digits.csv"
vit = data."/core_vit_digits.csv"
set style line 1 lc rgb "#1f77b4" lw 2
set style line 2 lc rgb "#d62728" lw 2
plot for [s=0:2] mlp skip 1 using ($1==s ? $2 : 1/0):4 with lines ls 1 title (s==0 ? "MLP 64-128-10" : ""), \
     for [s=0:2] vit skip 1 using ($1==s ? $2 : 1/0):4 with lines ls 2 title (s==0 ? "tiny ViT (patch 2, width 32, depth 2)" : ""), \
     0.96 with lines dt 2 lc rgb "#1f77b4" title "MLP bound 0.96", \
     0.95 with lines dt 2 lc rgb "#d62728" title "ViT bound 0.95"
