#!/usr/bin/python3
"""bench/peers/sklearn_peers.py - scikit-learn peer of weft's PAVA bench (BM_pava_row/weft/n).

Usage: sklearn_peers.py pava [--n N] [--min-time S]
Data: the row of bench/quantile_bench.cpp, y_k = U{-50..49} + 50 log(1 + k) (same law,
numpy's generator). Times sklearn.isotonic's contiguous PAVA kernel
(_inplace_contiguous_isotonic_regression, on a copy of y with unit weights) when importable,
else IsotonicRegression().fit_transform; the "peer" field says which. Timing as torch_peers.py.
"""
import argparse
import json
import sys
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=["pava"])
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--threads", type=int, default=1)  # accepted for symmetry; PAVA is serial
    ap.add_argument("--min-time", type=float, default=0.3)
    a = ap.parse_args()
    import sklearn
    rng = np.random.default_rng(42)
    k = np.arange(a.n, dtype=np.float64)
    y = rng.integers(0, 100, a.n).astype(np.float64) - 50.0 + 50.0 * np.log1p(k)
    w = np.ones(a.n)
    buf = np.empty_like(y)
    try:
        from sklearn._isotonic import _inplace_contiguous_isotonic_regression as kern

        def step():
            buf[:] = y
            w[:] = 1.0
            kern(buf, w)
        label = "scikit-learn _inplace_contiguous_isotonic_regression (kernel)"
    except ImportError:
        from sklearn.isotonic import IsotonicRegression
        x = np.arange(a.n, dtype=np.float64)

        def step():
            IsotonicRegression().fit_transform(x, y)
        label = "scikit-learn IsotonicRegression.fit_transform (wrapper)"
    step()
    it, t0, c0 = 0, time.perf_counter(), time.thread_time()
    while True:
        step()
        it += 1
        el = time.perf_counter() - t0
        if el >= a.min_time:
            break
    json.dump({"case": "pava", "peer": label, "seconds": el / it, "cpu_seconds": (time.thread_time() - c0) / it, "iterations": it, "threads": a.threads,
               "sklearn": sklearn.__version__}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
