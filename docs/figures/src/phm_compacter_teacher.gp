# Test MSE / frozen while fine-tuning adapters on the shifted teacher (examples/phm_compacter_teacher,
# spec compacter_phm.md V6), one line per seed. Run by scripts/figures with data=<figure-data dir>,
# out=<png>.
set terminal pngcairo size 900,520 font "DejaVu Sans,11"
set output out
set datafile separator ","
set key top right
set grid
set xlabel "Adam step (lr 3e-3, batch 64)"
set ylabel "test MSE / frozen base (2048 inputs)"
set yrange [0:1.05]
set title "Adapters on a frozen MLP 32-64-64-16, shifted teacher: Compacter vs PHM-Adapter vs dense"
f = data."/phm_compacter_teacher.csv"
set style line 1 lc rgb "#1f77b4" lw 2
set style line 2 lc rgb "#2ca02c" lw 2
set style line 3 lc rgb "#d62728" lw 2
plot for [s=0:4] f skip 1 using ((strcol(1) eq "compacter" && $2==s) ? $3 : 1/0):4 with lines ls 1 \
       title (s==0 ? "Compacter (LPHM n=4 r=1, shared A; 496)" : ""), \
     for [s=0:4] f skip 1 using ((strcol(1) eq "phm_adapter" && $2==s) ? $3 : 1/0):4 with lines ls 2 \
       title (s==0 ? "PHM-Adapter (n=4, own A, full B; 912)" : ""), \
     for [s=0:4] f skip 1 using ((strcol(1) eq "dense" && $2==s) ? $3 : 1/0):4 with lines ls 3 \
       title (s==0 ? "dense bottleneck (2,192)" : ""), \
     0.75 with lines dt 2 lc rgb "#1f77b4" title "bound 0.75", \
     0.55 with lines dt 2 lc rgb "#2ca02c" title "bound 0.55", \
     0.40 with lines dt 2 lc rgb "#d62728" title "bound 0.40"
