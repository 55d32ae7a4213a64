#!/usr/bin/python3
"""bench/peers/bench_table.py - the runner behind scripts/bench (run it through that script).

Times: with 1 thread both sides report the calling thread's CPU time per iteration (Google
Benchmark's cpu_time; time.thread_time in the peers), which other processes on a loaded machine
disturb far less than wall time; with 2 threads both report wall time. The bench's own counter
(bytes/s, FLOP/s) is rescaled to the time used, so the fraction of bound matches the cell.

Runs each hot path's weft bench (Google Benchmark, --benchmark_format=json) and its peer
(torch_peers.py / sklearn_peers.py) interleaved, ROUNDS rounds, keeping the minimum time of
each side; runs the roofline probe (bench/roofline_bench.cpp, torch.matmul for the peer's GEMM
peak) in every round as well. Prints one Markdown table on stdout
  | hot path | shape | threads | weft | peer | peer / weft | bound | fraction of bound |
and writes the same rows to a CSV. Progress goes to stderr.
"""
import argparse
import csv
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread"

# bound: "gemm" = Eigen GEMM peak (768^3, same threads), "cache" = L3-resident triad,
# "dram" = DRAM-sized triad, None = no roofline bound stated.
ROWS = [
    dict(key="lsq", path="LSQ kernel fwd+bwd vs PyTorch autograd", shape="3072x768, 2 bit, per row",
         exe="quant_bench", name="BM_lsq/weft/{t}/real_time", counter="bytes_per_second",
         peer=("torch", "lsq"), bound="cache"),
    dict(key="statsq", path="StatsQ fake-quant kernel fwd+bwd vs PyTorch autograd", shape="3072x768, 2 bit, per row",
         exe="quant_bench", name="BM_statsq/weft/{t}/real_time", counter="bytes_per_second",
         peer=("torch", "statsq"), bound="cache"),
    dict(key="lsq_tape", path="LSQ fwd+bwd through weft's tape vs PyTorch autograd", shape="3072x768, 2 bit, per row",
         exe="quant_bench", name="BM_lsq_tape/{t}/real_time", counter="bytes_per_second",
         peer=("torch", "lsq"), bound="cache"),
    dict(key="statsq_tape", path="StatsQ fwd+bwd through weft's tape vs PyTorch autograd",
         shape="3072x768, 2 bit, per row", exe="quant_bench", name="BM_statsq_tape/{t}/real_time",
         counter="bytes_per_second", peer=("torch", "statsq"), bound="cache"),
    dict(key="lphm", path="LPHM (r=1) factored fwd+bwd vs PyTorch materialised H", shape="N=64, 768x768, n=4",
         exe="phm_bench", name="BM_fwd_bwd/lphm_factored/768/768/64/{t}", counter="FLOP/s",
         peer=("torch", "lphm_dense"), bound="gemm"),
    dict(key="phm", path="PHM factored fwd+bwd vs PyTorch factored einsum", shape="N=64, 768x768, n=4",
         exe="phm_bench", name="BM_fwd_bwd/phm_factored/768/768/64/{t}", counter="FLOP/s",
         peer=("torch", "phm_einsum"), bound="gemm"),
    dict(key="lora", path="LoRA r=8 fwd+bwd (base frozen) vs PyTorch autograd", shape="batch 64, 768->768",
         exe="peft_bench", name="BM_peft_train/lora/{t}", counter="FLOP/s", peer=("torch", "lora"), bound="gemm"),
    dict(key="linear", path="full linear fwd+bwd vs PyTorch autograd", shape="batch 64, 768->768",
         exe="peft_bench", name="BM_peft_train/base_full/{t}", counter="FLOP/s", peer=("torch", "linear"),
         bound="gemm"),
    dict(key="gemm64", path="GEMM: Eigen vs torch.matmul", shape="64x768x768",
         exe="roofline_bench", name="BM_eigen_gemm/64/{t}/real_time", counter="FLOP/s", peer=("torch", "gemm64"),
         bound="gemm"),
    dict(key="mlp", path="MLP Adam step vs PyTorch nn + optim.Adam", shape="64-128-10, batch 32",
         exe="core_bench", name="BM_mlp_step/weft/{t}", counter="FLOP/s", peer=("torch", "mlp"), bound="gemm"),
    dict(key="vit", path="tiny-ViT Adam step vs PyTorch (same architecture)", shape="8x8, patch 2, width 32, depth 2, batch 32",
         exe="core_bench", name="BM_vit_step/weft/{t}", counter=None, peer=("torch", "vit"), bound=None),
    dict(key="dual", path="D-Pruner dual step vs PyTorch in-place ops", shape="4096x4096",
         exe="prune_bench", name="BM_dual_step/weft:1/threads:{t}/real_time", counter="bytes_per_second",
         peer=("torch", "dual"), bound="dram"),
    dict(key="mask", path="magnitude 50 % mask vs PyTorch abs + kthvalue", shape="4096x4096, whole matrix",
         exe="prune_bench", name="BM_mask_weft/score:0/threads:{t}/real_time", counter="bytes_per_second",
         peer=("torch", "mask"), bound="dram"),
    dict(key="hep", path="hEP relaxation step vs PyTorch complex64", shape="784-256-256-10, 32 samples, 3 phases",
         exe="ep_bench", name="BM_step_weft/threads:{t}/simd:1/real_time", counter="FLOP/s",
         peer=("torch", "hep_step"), bound="gemm"),
    dict(key="pava", path="PAVA one row vs scikit-learn's PAVA", shape="n=100000, double",
         exe="quantile_bench", name="BM_pava_row/weft/100000", counter="bytes/s", peer=("sklearn", "pava"),
         bound=None, threads=[1]),
]
PROBES = [  # (key, exe, name, counter)
    ("triad_dram", "roofline_bench", "BM_triad_dram/{t}/real_time", "bytes_per_second"),
    ("triad_cache", "roofline_bench", "BM_triad_cache/{t}/real_time", "bytes_per_second"),
    ("gemm_peak", "roofline_bench", "BM_eigen_gemm_peak/{t}/real_time", "FLOP/s"),
]
UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def weft_seconds(b, threads):
    """1 thread: the main thread's CPU time (robust to other processes on a loaded machine);
    more threads: wall time (the CPU time of one thread would hide the others' work)."""
    return b["cpu_time" if threads == 1 else "real_time"] * UNIT[b["time_unit"]]


def rate(b, counter, seconds):
    """The bench's counter rescaled to `seconds` per iteration (Google Benchmark divides by the
    real time for /real_time benches, by the CPU time otherwise)."""
    v = b.get(counter)
    if v is None or not seconds:
        return None
    basis = b["real_time" if b["name"].endswith("/real_time") else "cpu_time"] * UNIT[b["time_unit"]]
    return v * basis / seconds


def peer_seconds(res, threads):
    return res["cpu_seconds" if threads == 1 else "seconds"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run_weft(bindir, exe, name, threads, min_time):
    path = os.path.join(bindir, exe)
    if not os.access(path, os.X_OK):
        return None, f"{exe} not built"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    flt = "^" + re.escape(name) + "$"
    p = subprocess.run([path, "--benchmark_filter=" + flt, "--benchmark_format=json",
                        f"--benchmark_min_time={min_time}"], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return None, f"{exe} exited {p.returncode}: {p.stderr.strip()[-200:]}"
    try:
        bs = [b for b in json.loads(p.stdout)["benchmarks"] if b.get("run_type", "iteration") == "iteration"]
    except (ValueError, KeyError) as e:
        return None, f"{exe}: unreadable JSON ({e})"
    if not bs:
        return None, f"{exe}: no benchmark named {name}"
    b = bs[0]
    return b, None


def run_peer(kind, case, threads, min_time):
    script = os.path.join(HERE, "torch_peers.py" if kind == "torch" else "sklearn_peers.py")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    if os.path.isdir(OPENBLAS):  # PyTorch on Debian takes BLAS from libblas.so.3; use OpenBLAS's
        env["LD_LIBRARY_PATH"] = OPENBLAS + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    p = subprocess.run([PY, script, case, "--threads", str(threads), "--min-time", str(min_time)],
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return None, p.stderr.strip().splitlines()[-1:] or ["failed"]
    return json.loads(p.stdout.strip().splitlines()[-1]), None


def peer_available(kind):
    mod = "torch" if kind == "torch" else "sklearn"
    return subprocess.run([PY, "-c", f"import {mod}"], capture_output=True).returncode == 0


def fmt_time(s):
    if s is None:
        return "-"
    for unit, f in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= f:
            return f"{s / f:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_rate(v, counter):
    if counter == "FLOP/s":
        return f"{v / 1e9:.3g} GFLOP/s"
    return f"{v / 1e9:.3g} GB/s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="folder of the bench executables")
    ap.add_argument("--csv", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--filter", default=".")
    ap.add_argument("--figure-data-only", action="store_true", help="only derive figure-data from --csv")
    a = ap.parse_args()
    if a.figure_data_only:
        write_figure_data(a.csv)
        return
    threads = [int(t) for t in a.threads.split(",")]
    rows = [r for r in ROWS if re.search(a.filter, r["key"] + " " + r["path"])]
    have = {k: peer_available(k) for k in ("torch", "sklearn")}
    for k, ok in have.items():
        if not ok:
            log(f"bench: peer {k} not importable by {PY}: its rows show '-' for the peer"
                f" (Debian: python3-torch, python3-sklearn)")
    best = {}   # (key, t) -> dict(weft=b, weft_s=, peer_s=, peer=label)
    probes = {}

    def keep(store, key, field, value, payload=None):
        e = store.setdefault(key, {})
        if value is not None and (e.get(field) is None or value < e[field]):
            e[field] = value
            if payload is not None:
                e[field + "_data"] = payload

    for rnd in range(a.rounds):
        log(f"--- round {rnd + 1} of {a.rounds}")
        for t in threads:
            for key, exe, name, counter in PROBES:
                b, err = run_weft(a.bin, exe, name.format(t=t), t, a.min_time)
                if err:
                    log(f"bench: probe {key}/{t}: {err}")
                    continue
                keep(probes, (key, t), "s", weft_seconds(b, t), b)
            if have["torch"]:
                res, err = run_peer("torch", "gemm_peak", t, a.min_time)
                if res:
                    keep(probes, ("torch_gemm_peak", t), "s", peer_seconds(res, t), res)
        for r in rows:
            for t in r.get("threads", threads):
                if t not in threads:
                    continue
                name = r["name"].format(t=t)
                b, err = run_weft(a.bin, r["exe"], name, t, a.min_time)
                if err:
                    log(f"bench: {r['key']}/{t}: {err}")
                else:
                    keep(best, (r["key"], t), "weft_s", weft_seconds(b, t), b)
                kind, case = r["peer"]
                if have[kind]:
                    res, perr = run_peer(kind, case, t, a.min_time)
                    if perr:
                        log(f"bench: peer {kind} {case}/{t}: {perr}")
                    else:
                        keep(best, (r["key"], t), "peer_s", peer_seconds(res, t), res)
                e = best.get((r["key"], t), {})
                log(f"{r['key']}/{t}: weft {fmt_time(e.get('weft_s'))}, peer {fmt_time(e.get('peer_s'))}")

    def bound_of(kind, t):
        if kind is None:
            return None, "-"
        key = {"gemm": "gemm_peak", "cache": "triad_cache", "dram": "triad_dram"}[kind]
        e = probes.get((key, t))
        if not e:
            return None, "(probe missing)"
        b = e["s_data"]
        c = "FLOP/s" if kind == "gemm" else "bytes_per_second"
        v = rate(b, c, e["s"])
        label = {"gemm": "Eigen GEMM peak 768^3", "cache": "L3-resident triad (28 MB)",
                 "dram": "DRAM triad"}[kind]
        return v, f"{label} {fmt_rate(v, c)}"

    out_rows = []
    print("| hot path | shape | threads | weft | peer | peer / weft | bound | fraction of bound |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        for t in r.get("threads", threads):
            if t not in threads:
                continue
            e = best.get((r["key"], t), {})
            ws, ps = e.get("weft_s"), e.get("peer_s")
            ratio = ps / ws if ws and ps else None
            bval, blabel = bound_of(r["bound"], t)
            achieved = rate(e["weft_s_data"], r["counter"], ws) if ws else None
            frac = achieved / bval if achieved and bval else None
            peer_label = e["peer_s_data"]["peer"] if ps else "(peer not run)"
            print(f"| {r['path']} | {r['shape']} | {t} | {fmt_time(ws)} | {fmt_time(ps)} | "
                  f"{f'{ratio:.3g}x' if ratio else '-'} | {blabel} | {f'{frac:.2f}' if frac else '-'} |")
            out_rows.append([r["key"], r["path"], r["shape"], t, ws, ps, ratio, peer_label,
                             r["bound"] or "", bval or "", achieved or "", frac or "",
                             r["name"].format(t=t)])
    # the probes themselves, as rows (the peer's GEMM peak beside Eigen's)
    for t in threads:
        e, pe = probes.get(("gemm_peak", t), {}), probes.get(("torch_gemm_peak", t), {})
        ws, ps = e.get("s"), pe.get("s")
        flops = 2.0 * 768 ** 3
        wv = rate(e["s_data"], "FLOP/s", ws) if ws else None
        print(f"| roofline: GEMM peak, Eigen vs torch.matmul | 768x768x768 | {t} | {fmt_time(ws)} | {fmt_time(ps)} | "
              f"{f'{ps / ws:.3g}x' if ws and ps else '-'} | "
              f"{fmt_rate(wv, 'FLOP/s') if wv else '-'} vs {fmt_rate(flops / ps, 'FLOP/s') if ps else '-'} | "
              f"{'1.00' if wv else '-'} |")
        out_rows.append(["gemm_peak", "roofline: GEMM peak", "768x768x768", t, ws, ps, ps / ws if ws and ps else "",
                         "torch.matmul", "gemm", wv or "", wv or "", 1.0 if wv else "", "BM_eigen_gemm_peak"])
        for key, label in (("triad_dram", "roofline: DRAM triad"), ("triad_cache", "roofline: L3-resident triad (28 MB)")):
            e = probes.get((key, t), {})
            if not e:
                continue
            b = e["s_data"]
            mib = b.get("array_MiB", 0)
            bw = rate(b, "bytes_per_second", e["s"])
            print(f"| {label} | 3 x {mib:.0f} MiB float | {t} | {fmt_time(e['s'])} | - | - | "
                  f"{fmt_rate(bw, 'B')} | 1.00 |")
            out_rows.append([key, label, f"3 x {mib:.0f} MiB", t, e["s"], "", "", "", key[6:], bw, bw, 1.0, key])
    with open(a.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "hot_path", "shape", "threads", "weft_seconds", "peer_seconds", "peer_over_weft", "peer",
                    "bound_kind", "bound_value", "weft_achieved", "fraction_of_bound", "weft_bench"])
        w.writerows(out_rows)
    write_figure_data(a.csv)
    log(f"bench: CSV {a.csv}")


def write_figure_data(csv_path):
    """<csv folder>/figure-data/bench_peers.csv: key, threads, weft and peer seconds of the
    1-thread rows with both sides (the series bench/peers/bench_peers.gp draws)."""
    folder = os.path.join(os.path.dirname(os.path.abspath(csv_path)), "figure-data")
    os.makedirs(folder, exist_ok=True)
    with open(csv_path) as f, open(os.path.join(folder, "bench_peers.csv"), "w") as out:
        out.write("key,threads,weft_seconds,peer_seconds\n")
        for r in csv.DictReader(f):
            if r["weft_seconds"] and r["peer_seconds"] and r["threads"] == "1":
                out.write(f"{r['key']},{r['threads']},{r['weft_seconds']},{r['peer_seconds']}\n")


if __name__ == "__main__":
    main()
