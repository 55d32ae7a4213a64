#!/usr/bin/python3
"""bench/peers/torch_peers.py - PyTorch (CPU) peers of weft's benches, at the benches' shapes.

Usage: torch_peers.py CASE [--threads N] [--min-time S]
Prints one JSON object: {"case", "peer", "seconds" (mean per iteration, like Google
Benchmark), "iterations", "threads", "torch"}. The timing policy mirrors Google Benchmark's:
one warm-up call, then iterations until --min-time seconds have passed (time.perf_counter), the
mean per iteration reported, as wall time ("seconds") and as the calling thread's CPU
time ("cpu_seconds", time.thread_time); scripts/bench takes the minimum over its interleaved rounds.
Each case builds its data outside the timed loop and reuses it, as the C++ benches do.
"""
import argparse
import json
import math
import sys
import time

import torch

F = torch.float32


def lsq_case():
    # bench/quant_bench.cpp BM_lsq: 3072 x 768, per-row scale, 2 bits signed (-2..1), fwd+bwd
    gen = torch.Generator().manual_seed(1)
    w = (torch.randn(3072, 768, generator=gen) * 0.02).requires_grad_()
    s = (2 * w.detach().abs().mean(dim=1, keepdim=True)).requires_grad_()
    g = torch.rand(3072, 768, generator=gen) * 2 - 1
    qn, qp = -2.0, 1.0

    def step():
        w.grad = None
        s.grad = None
        v = torch.clamp(w / s, qn, qp)
        vr = v + (torch.round(v) - v).detach()  # round with a straight-through gradient
        q = vr * s
        codes = vr.detach().to(torch.int16)
        q.backward(g)
        return codes
    return "PyTorch autograd LSQ (round STE, grad to w and s)", step


def statsq_case():
    # bench/quant_bench.cpp BM_statsq: s = 2 mean|w| per row, 2 bits, identity STE
    gen = torch.Generator().manual_seed(1)
    w = (torch.randn(3072, 768, generator=gen) * 0.02).requires_grad_()
    g = torch.rand(3072, 768, generator=gen) * 2 - 1
    n, eps = 2.0, 1e-6

    def step():
        w.grad = None
        wd = w.detach()
        s = 2 * wd.abs().mean(dim=1, keepdim=True)
        t = torch.clamp(wd / s, -1.0, 1.0 - eps) * n
        k = torch.clamp(torch.floor(t), -n, n - 1)
        q = (k + 0.5) * (s / n)
        y = w + (q - wd)  # identity straight-through estimator
        y.backward(g)
        return k.to(torch.int16)
    return "PyTorch autograd StatsQ (identity STE)", step


def phm_problem(N=64, k=768, d=768, n=4):
    gen = torch.Generator().manual_seed(5)
    p, q = k // n, d // n
    x = torch.randn(N, k, generator=gen).requires_grad_()
    A = (torch.randn(n, n, n, generator=gen) * 0.5).requires_grad_()
    B = (torch.randn(n, p, q, generator=gen) / math.sqrt(k)).requires_grad_()
    s = torch.randn(n, p, 1, generator=gen).requires_grad_()
    t = (torch.randn(n, 1, q, generator=gen) / math.sqrt(k)).requires_grad_()
    b = (torch.randn(d, generator=gen) * 0.1).requires_grad_()
    g = torch.randn(N, d, generator=gen)
    return x, A, B, s, t, b, g, n, p, q


def phm_einsum_case():
    # bench/phm_bench.cpp BM_fwd_bwd/phm_factored/768/768/64: y = x H + b, H = sum_i A_i (x) B_i,
    # never forming H: einsum contracts x with B first (N k d), then with A (N n^2 d)
    x, A, B, s, t, b, g, n, p, q = phm_problem()
    params = (x, A, B, b)

    def step():
        for v in params:
            v.grad = None
        y = torch.einsum("nap,ipq,iaj->njq", x.view(x.shape[0], n, p), B, A).reshape(x.shape[0], n * q) + b
        y.backward(g)
    return "PyTorch einsum, factored (x with B, then A)", step


def lphm_dense_case():
    # LPHM (r = 1): B_i = s_i t_i, H = sum_i kron(A_i, B_i) materialised, then y = x H + b
    x, A, B, s, t, b, g, n, p, q = phm_problem()
    params = (x, A, s, t, b)

    def step():
        for v in params:
            v.grad = None
        Bi = torch.bmm(s, t)
        H = sum(torch.kron(A[i], Bi[i]) for i in range(n))
        y = x @ H + b
        y.backward(g)
    return "PyTorch, materialised H (kron) + matmul", step


def linear_problem():
    gen = torch.Generator().manual_seed(5)
    x = (torch.rand(64, 768, generator=gen) * 2 - 1).requires_grad_()
    W = torch.randn(768, 768, generator=gen) / math.sqrt(768)
    G = torch.rand(64, 768, generator=gen) * 2 - 1
    return x, W, G


def lora_case():
    # bench/peft_bench.cpp BM_peft_train/lora: frozen 768x768, LoRA r = 8, batch 64, dX dA dB
    x, W, G = linear_problem()
    gen = torch.Generator().manual_seed(6)
    A = (torch.randn(8, 768, generator=gen) * 0.01).requires_grad_()
    Bm = (torch.randn(768, 8, generator=gen) * 0.01).requires_grad_()
    scale = 16.0 / 8.0

    def step():
        for v in (x, A, Bm):
            v.grad = None
        y = x @ W.t() + scale * ((x @ A.t()) @ Bm.t())
        y.backward(G)
    return "PyTorch autograd (x W^T + s x A^T B^T)", step


def linear_case():
    # bench/peft_bench.cpp BM_peft_train/base_full: 768x768 trained in full, batch 64, dX and dW
    x, W, G = linear_problem()
    W = W.clone().requires_grad_()

    def step():
        x.grad = None
        W.grad = None
        y = x @ W.t()
        y.backward(G)
    return "PyTorch autograd (x W^T)", step


def gemm_case(m):
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(m, 768, generator=gen)
    b = torch.rand(768, 768, generator=gen)
    c = torch.empty(m, 768)

    def step():
        torch.matmul(a, b, out=c)
    return "torch.matmul", step


def mlp_case():
    # bench/core_bench.cpp BM_mlp_step: MLP 64-128-10, batch 32, softmax CE, Adam, 64 batches in turn
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xs = [torch.rand(32, 64) for _ in range(64)]
    ys = [torch.randint(0, 10, (32,)) for _ in range(64)]
    state = {"b": 0}
    lossf = torch.nn.CrossEntropyLoss()

    def step():
        b = state["b"] = (state["b"] + 1) % 64
        opt.zero_grad(set_to_none=False)
        loss = lossf(net(xs[b]), ys[b])
        loss.backward()
        opt.step()
    return "PyTorch nn.Sequential + optim.Adam", step


class TinyViT(torch.nn.Module):
    """nn::TinyViT's architecture: 8x8 images, patch 2, width 32, depth 2, 4 heads, MLP ratio 2
    (GELU), pre-LN blocks, class token and learned positions, final LayerNorm, linear head."""

    def __init__(self, S=8, p=2, D=32, depth=2, heads=4, ratio=2, classes=10):
        super().__init__()
        self.S, self.p = S, p
        g = S // p
        self.embed = torch.nn.Linear(p * p, D)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, D) * 0.02)
        self.pos = torch.nn.Parameter(torch.randn(g * g + 1, D) * 0.02)
        self.blocks = torch.nn.ModuleList()
        for _ in range(depth):
            self.blocks.append(torch.nn.ModuleDict(dict(
                ln1=torch.nn.LayerNorm(D), attn=torch.nn.MultiheadAttention(D, heads, batch_first=True),
                ln2=torch.nn.LayerNorm(D),
                mlp=torch.nn.Sequential(torch.nn.Linear(D, ratio * D), torch.nn.GELU(), torch.nn.Linear(ratio * D, D)))))
        self.norm = torch.nn.LayerNorm(D)
        self.head = torch.nn.Linear(D, classes)

    def forward(self, x):
        B, S, p = x.shape[0], self.S, self.p
        g = S // p
        x = x.view(B, g, p, g, p).transpose(2, 3).reshape(B, g * g, p * p)
        x = torch.cat([self.cls.expand(B, -1, -1), self.embed(x)], dim=1) + self.pos
        for b in self.blocks:
            h = b["ln1"](x)
            x = x + b["attn"](h, h, h, need_weights=False)[0]
            x = x + b["mlp"](b["ln2"](x))
        return self.head(self.norm(x)[:, 0])


def vit_case():
    # bench/core_bench.cpp BM_vit_step: tiny ViT, batch 32, softmax CE, Adam, 64 batches in turn
    torch.manual_seed(1)
    net = TinyViT()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xs = [torch.rand(32, 64) for _ in range(64)]
    ys = [torch.randint(0, 10, (32,)) for _ in range(64)]
    state = {"b": 0}
    lossf = torch.nn.CrossEntropyLoss()

    def step():
        b = state["b"] = (state["b"] + 1) % 64
        opt.zero_grad(set_to_none=False)
        loss = lossf(net(xs[b]), ys[b])
        loss.backward()
        opt.step()
    return "PyTorch TinyViT (nn.MultiheadAttention) + optim.Adam", step


def dual_case():
    # bench/prune_bench.cpp BM_dual_step: 4096 x 4096, gt = g (1 + kappa ghat);
    # imp += |sign u + a u^2| with u = gscale gt w (sign 1, a 0.5, gscale 1), all in place
    gen = torch.Generator().manual_seed(2)
    N = 4096
    w = torch.randn(N, N, generator=gen) * 0.02
    g = torch.randn(N, N, generator=gen) * 1e-3
    ghat = torch.rand(N, N, generator=gen) * 2
    gt = torch.empty(N, N)
    u = torch.empty(N, N)
    imp = torch.zeros(N, N)

    def step():
        torch.mul(ghat, 10.0, out=gt)
        gt.add_(1.0).mul_(g)
        torch.mul(gt, w, out=u)
        imp.add_(torch.addcmul(u, u, u, value=0.5).abs_())
    return "PyTorch in-place tensor ops", step


def mask_case():
    # bench/prune_bench.cpp BM_mask_weft score 0: |W| and a 50 % mask over the whole 4096 x 4096
    # matrix (exact count): kthvalue threshold, then the comparison
    gen = torch.Generator().manual_seed(1)
    N = 4096
    w = torch.randn(N, N, generator=gen) * 0.02
    s = torch.empty(N, N)
    k = N * N // 2

    def step():
        torch.abs(w, out=s)
        thr = torch.kthvalue(s.view(-1), k).values
        return s > thr
    return "PyTorch abs + kthvalue + compare", step


def hep_case():
    # bench/ep_bench.cpp BM_step: one relaxation step of the 784-256-256-10 network, 32 samples,
    # the three distinct phases beta = 0.5, -0.5, 0.5i as 96 complex64 columns (weft: 2 real +
    # 1 complex phase in split planes)
    torch.manual_seed(1)
    cols, K = 96, 32
    cf = torch.complex64

    def c(*shape, scale=0.05):
        return (torch.randn(*shape) * scale).to(cf)
    W2, B2, W3, B3, V = c(256, 256), c(256, 256), c(10, 256), c(256, 10), c(10, 10)
    b2, b3, cc = c(256, 1), c(10, 1), c(10, 1)
    drive = c(256, K).repeat(1, 3)
    beta = torch.tensor([0.5] * K + [-0.5] * K + [0.5j] * K, dtype=cf)
    label = torch.randint(0, 10, (cols,))
    onehot = torch.nn.functional.one_hot(label, 10).t().to(cf)
    U = [c(256, cols, scale=1.0), c(256, cols, scale=1.0), c(10, cols, scale=1.0)]

    def phi(z):
        return 1.0 / (1.0 + torch.exp(-(4.0 * z - 2.0)))

    def step():
        R1, R2, R3 = phi(U[0]), phi(U[1]), phi(U[2])
        Z = V @ R3 + cc
        m = Z.real.argmax(dim=0, keepdim=True)
        Z = torch.exp(Z - Z.gather(0, m))
        Z = (Z / Z.sum(dim=0, keepdim=True) - onehot) * beta
        U[0] = drive + B2 @ R2
        U[1] = W2 @ R1 + B3 @ R3 + b2
        U[2] = W3 @ R2 + V.t() @ Z + b3
    return "PyTorch complex64 matmuls, 96 columns", step


CASES = {
    "lsq": lsq_case, "statsq": statsq_case, "phm_einsum": phm_einsum_case, "lphm_dense": lphm_dense_case,
    "lora": lora_case, "linear": linear_case, "gemm64": lambda: gemm_case(64), "gemm_peak": lambda: gemm_case(768),
    "mlp": mlp_case, "vit": vit_case, "dual": dual_case, "mask": mask_case, "hep_step": hep_case,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-time", type=float, default=0.3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    label, step = CASES[a.case]()
    step()  # warm-up (allocator, first-touch, lazy init)
    it, t0, c0 = 0, time.perf_counter(), time.thread_time()
    while True:
        step()
        it += 1
        el = time.perf_counter() - t0
        if el >= a.min_time and it >= 1:
            break
    json.dump({"case": a.case, "peer": label, "seconds": el / it, "cpu_seconds": (time.thread_time() - c0) / it, "iterations": it, "threads": a.threads,
               "torch": torch.__version__}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
