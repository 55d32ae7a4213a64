# Validation bits per character against training step for each stage of the flagship pipeline
# (examples/pipeline_charlm; stage 1, float pretraining, only so far), general (Shakespeare) and
# legal (licence) validation text, one line per seed. Run by scripts/figures with
# data=<figure-data dir>, out=<png>.
set terminal pngcairo size 900,520 font "DejaVu Sans,11"
set output out
set datafile separator ","
set key top right
set grid
set xlabel "training step (stage 1: batch 16 x 128 characters)"
set ylabel "validation bits per character"
set yrange [2:7]
set title "weft flagship: char TinyGPT (0.83 M parameters), stage 1 pretraining on Shakespeare"
f = data."/pipeline_charlm_stage1.csv"
set style line 1 lc rgb "#1f77b4" lw 2
set style line 2 lc rgb "#d62728" lw 2
plot for [s=0:2] f skip 1 using ($1==s ? $3 : 1/0):4 with linespoints ls 1 pt 7 ps 0.5 title (s==0 ? "general (Shakespeare) validation" : ""), \
     for [s=0:2] f skip 1 using ($1==s ? $3 : 1/0):5 with linespoints ls 2 pt 7 ps 0.5 title (s==0 ? "legal (licences) validation, never trained on" : "")
