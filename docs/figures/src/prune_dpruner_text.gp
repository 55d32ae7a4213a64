# D-Pruner on the character-level LM (examples/prune_dpruner_text, seed 0): test loss of the
# general (Shakespeare) and legal (licence texts) domains against the sparsity of every pruned
# matrix, for each scoring method, with the importances of the 50 % run reused at every sparsity
# (SparseGPT re-run per sparsity). Run by scripts/figures with data=<figure-data dir>, out=<png>.
set terminal pngcairo size 1200,500 font "DejaVu Sans,11"
set output out
set datafile separator ","
f = data."/prune_dpruner_sweep.csv"
sel(m) = "< grep ',".m.",' ".f   # one method's rows, in sparsity order
set style line 1 lc rgb "#7f7f7f" lw 2 pt 7
set style line 2 lc rgb "#ff7f0e" lw 2 pt 5
set style line 3 lc rgb "#2ca02c" lw 2 pt 9
set style line 4 lc rgb "#9467bd" lw 2 pt 11
set style line 5 lc rgb "#d62728" lw 3 pt 13
set style line 6 lc rgb "#1f77b4" lw 2 pt 4 dt 2
set multiplot layout 1,2 title "weft prune: char LM (K 6, E 10, hidden 64), per-matrix masks, no retraining (seed 0)"
set grid
set key top left
set xlabel "sparsity of each Linear weight"
set ylabel "test loss (nats / symbol)"
set xrange [0:0.85]
set yrange [1.6:3.3]
do for [col=3:4] {
  set title (col == 3 ? "general domain (Shakespeare)" : "legal domain (licence texts)")
  plot sel("magnitude") using 1:col with linespoints ls 1 title "magnitude", \
       sel("wanda") using 1:col with linespoints ls 2 title "Wanda (per row)", \
       sel("general_only") using 1:col with linespoints ls 3 title "general-only (ObsDiag G)", \
       sel("domain_only") using 1:col with linespoints ls 4 title "domain-only (c = 0)", \
       sel("dual") using 1:col with linespoints ls 5 title "D-Pruner dual (isotropic, c = 10)", \
       sel("sparsegpt") using 1:col with linespoints ls 6 title "SparseGPT (mask + OBS update)", \
       sel("dense") using 1:col with points pt 3 ps 2 lc rgb "#000000" title "dense"
}
unset multiplot
