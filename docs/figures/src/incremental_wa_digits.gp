# Class-incremental digits (examples/incremental_wa_digits): left, top-1 accuracy on all seen
# classes after each task for FT, FT+KD and KD+WA (mean over seeds, thin lines per seed); right,
# the mean-norm ratio rho = mean ||W_new|| / mean ||W_old|| of the head before and after Weight
# Aligning. Run by scripts/figures with data=<figure-data dir>, out=<png>.
set terminal pngcairo size 1200,500 font "DejaVu Sans,11"
set output out
set datafile separator ","
runs = data."/incremental_wa_digits.csv"
means = data."/incremental_wa_digits_mean.csv"
set style line 1 lc rgb "#7f7f7f" lw 2 pt 7
set style line 2 lc rgb "#1f77b4" lw 2 pt 5
set style line 3 lc rgb "#d62728" lw 2 pt 9
set multiplot layout 1,2 title "weft incremental: digits, 5 tasks of 2 classes, memory 20 (herding)"
set grid
set key bottom left
set xlabel "classes seen (after task t)"
set ylabel "top-1 accuracy on seen classes (%)"
set xrange [1.5:10.5]
set xtics 2,2,10
set yrange [40:100]
set title "accuracy per task"
plot for [s=0:2] runs skip 1 using (strcol(1) eq "FT" && $2==s ? $4 : 1/0):(100*$5) with lines ls 1 lw 0.5 notitle, \
     for [s=0:2] runs skip 1 using (strcol(1) eq "FT+KD" && $2==s ? $4 : 1/0):(100*$5) with lines ls 2 lw 0.5 notitle, \
     for [s=0:2] runs skip 1 using (strcol(1) eq "KD+WA" && $2==s ? $4 : 1/0):(100*$5) with lines ls 3 lw 0.5 notitle, \
     means skip 1 using (strcol(1) eq "FT" ? $3 : 1/0):(100*$4) with linespoints ls 1 title "FT (CE + memory)", \
     means skip 1 using (strcol(1) eq "FT+KD" ? $3 : 1/0):(100*$4) with linespoints ls 2 title "FT+KD", \
     means skip 1 using (strcol(1) eq "KD+WA" ? $3 : 1/0):(100*$4) with linespoints ls 3 title "KD+WA (clip + align)"
set title "head norm ratio rho (mean over seeds)"
set ylabel "rho = mean ||W_{new}||_2 / mean ||W_{old}||_2"
set xrange [3.5:10.5]
set xtics 4,2,10
set yrange [0.6:1.8]
set key top right
plot means skip 1 using (strcol(1) eq "FT" ? $3 : 1/0):5 with linespoints ls 1 title "FT", \
     means skip 1 using (strcol(1) eq "FT+KD" ? $3 : 1/0):5 with linespoints ls 2 title "FT+KD", \
     means skip 1 using (strcol(1) eq "KD+WA" ? $3 : 1/0):5 with linespoints ls 3 title "KD+WA before aligning", \
     means skip 1 using (strcol(1) eq "KD+WA" ? $3 : 1/0):6 with linespoints ls 3 dt 2 pt 4 title "KD+WA after aligning", \
     1 with lines lc rgb "#000000" dt 3 notitle
unset multiplot
