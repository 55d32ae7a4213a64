# Fine-tuning loss per step of the PEFT example (examples/peft_bone_finetune): training loss on
# the shifted teacher, mean over seeds, one line per method. Run by scripts/figures with
# data=<figure-data dir>, out=<png>.
set terminal pngcairo size 900,520 font "DejaVu Sans,11"
set output out
set datafile separator ","
set key top right
set grid
set logscale y
set xlabel "fine-tuning step (Adam lr 3e-3, batch 64)"
set ylabel "training loss (mean over seeds)"
set xrange [0:300]
set title "weft peft: adapting a pretrained MLP 32-64-64-16 to a shifted teacher"
f = data."/peft_bone_finetune.csv"
plot f skip 1 using (strcol(1) eq "frozen" ? $2 : 1/0):3 with lines lw 2 dt 2 lc rgb "#7f7f7f" title "frozen", \
     f skip 1 using (strcol(1) eq "full_ft" ? $2 : 1/0):3 with lines lw 2 lc rgb "#000000" title "full FT", \
     f skip 1 using (strcol(1) eq "lora" ? $2 : 1/0):3 with lines lw 2 lc rgb "#1f77b4" title "LoRA r4", \
     f skip 1 using (strcol(1) eq "lora_plus" ? $2 : 1/0):3 with lines lw 2 lc rgb "#17becf" title "LoRA+ r4", \
     f skip 1 using (strcol(1) eq "pissa" ? $2 : 1/0):3 with lines lw 2 lc rgb "#2ca02c" title "PiSSA r4", \
     f skip 1 using (strcol(1) eq "olora" ? $2 : 1/0):3 with lines lw 2 lc rgb "#9467bd" title "OLoRA r4", \
     f skip 1 using (strcol(1) eq "bone_shared" ? $2 : 1/0):3 with lines lw 2 lc rgb "#ff7f0e" title "BoneShared (MiSS) r8", \
     f skip 1 using (strcol(1) eq "bone_affine" ? $2 : 1/0):3 with lines lw 2 lc rgb "#d62728" title "BoneAffine (Bat) r8"
