#!/usr/bin/env python3
"""PyTorch cross-check of weft's safetensors state dicts (ctest nn_torch_crosscheck, label peer).

1. Builds torch.nn.Sequential(Linear(8, 32), ReLU(), Linear(32, 16), ReLU(), Linear(16, 4))
   with a fixed seed and writes its state_dict as safetensors with json + struct + numpy (the
   `safetensors` package is not packaged by Debian), in torch's key order with metadata, plus
   the same weights as F16 and BF16 (torch's .half() / .bfloat16()) and those rounded weights
   widened back to F32; the input x (10, 8) and torch's outputs in float32 and float64 as .npy.
2. Runs the weft program (tests/nn/torch_crosscheck.cpp), which loads the state dict into
   weft's MLP through the name mapping, reproduces torch's outputs to 1e-6 and writes the
   weights back under torch's names as F32, F16 and BF16.
3. Reads weft's files with its own parser (checking the layout: 8-byte aligned data, offsets
   that tile the buffer), compares the F32 bytes with torch's weights, the F16/BF16 bits with
   torch's own rounding, and loads weft's F32 file into a fresh torch model with strict
   load_state_dict: its output must equal the original's bit for bit.
4. PEFT adapters: the weft program also trains LoRA, rsLoRA and MiSS (BoneShared) adapters on the
   loaded model and saves them PEFT-style (adapter_model.safetensors + adapter_config.json, torch
   module paths "0", "2", "4"). From the keys and the config alone this script rebuilds the
   adapted weights in torch, W + (lora_alpha / r) B A (lora_alpha / sqrt(r) with use_rslora), or
   W + the MiSS shard M^T tiled along the input, and reproduces weft's adapted outputs to 1e-6
   (max |weft - torch| / max |torch|); a rebuild with the other scaling must miss (control).

Exits 77 (ctest's SKIP_RETURN_CODE) when torch or numpy cannot be imported, 0 when every check
holds, 1 otherwise. Usage: torch_state_dict.py --exe PATH/torch_crosscheck --dir WORKDIR
"""
import argparse
import json
import os
import struct
import subprocess
import sys

SKIP = 77

try:
    import numpy as np
    import torch
except ImportError as e:  # the test is skipped, not failed, on machines without torch
    # Debian's python3-torch lives in the system interpreter; a python3 found first on PATH
    # (pyenv, a venv) may not see it, so try /usr/bin/python3 once before skipping
    system = "/usr/bin/python3"
    if (os.path.exists(system) and os.path.realpath(sys.executable) != os.path.realpath(system)
            and not os.environ.get("WEFT_TORCH_REEXEC")):
        os.environ["WEFT_TORCH_REEXEC"] = "1"
        os.execv(system, [system] + sys.argv)
    print(f"SKIPPED: the PyTorch cross-check needs python3-torch and python3-numpy ({e})")
    sys.exit(SKIP)

ST_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16"}


def raw_bytes(t):
    """Little-endian bytes of a tensor (16-bit floats through an int16 view: numpy has no bf16)."""
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> torch tensor, written in the dict's order."""
    header, blobs, at = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        b = raw_bytes(t)
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path, failures):
    """name -> (dtype, shape, bytes), metadata; layout problems are appended to failures."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    buf = data[8 + n:]
    if (8 + n) % 8:
        failures.append(f"{path}: data starts at byte {8 + n}, not 8-byte aligned")
    spans = sorted((info["data_offsets"][0], info["data_offsets"][1], name) for name, info in header.items())
    at = 0
    for b, e, name in spans:
        if b != at:
            failures.append(f"{path}: tensor {name} starts at {b}, expected {at}")
        at = e
    if at != len(buf):
        failures.append(f"{path}: tensors end at {at}, buffer has {len(buf)} bytes")
    return {name: (info["dtype"], info["shape"], buf[info["data_offsets"][0]:info["data_offsets"][1]])
            for name, info in header.items()}, meta


def check_adapter(d, kind, sd, x, failures):
    """Rebuilds weft's adapted model from adapter_<kind>/ and compares with y_<kind>.npy."""
    ad = os.path.join(d, f"adapter_{kind}")
    try:
        with open(os.path.join(ad, "adapter_config.json")) as f:
            cfg = json.load(f)
        tensors, meta = read_safetensors(os.path.join(ad, "adapter_model.safetensors"), failures)
    except OSError as e:
        failures.append(f"adapter_{kind}: {e}")
        return
    modules = ["0", "2", "4"]
    miss = kind == "miss"
    want_type = "MISS" if miss else "LORA"
    if cfg.get("peft_type") != want_type or sorted(cfg.get("target_modules", [])) != modules:
        failures.append(f"adapter_{kind}: config {cfg}")
        return
    if not miss and (cfg.get("use_rslora") != (kind == "rslora") or cfg.get("init_lora_weights") is not True):
        failures.append(f"adapter_{kind}: config {cfg}")
    suffixes = ["miss_block"] if miss else ["lora_A.weight", "lora_B.weight"]
    keys = {f"base_model.model.{m}.{s}" for m in modules for s in suffixes}
    if set(tensors) != keys:
        failures.append(f"adapter_{kind}: keys {sorted(tensors)} != {sorted(keys)}")
        return

    def get(name):
        dtype, shape, b = tensors[name]
        return torch.from_numpy(np.frombuffer(b, dtype="<f4" if dtype == "F32" else "<f8").copy()).reshape(shape).double()

    r = cfg["r"]

    def rebuild(scale_rule):
        model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.ReLU(),
                                    torch.nn.Linear(16, 4)).double()
        new = {}
        for m in modules:
            w = sd[f"{m}.weight"].double()
            if miss:  # delta W[o, j] = M[j mod r, o]
                mb = get(f"base_model.model.{m}.miss_block")
                delta = mb.t()[:, torch.arange(w.shape[1]) % mb.shape[0]]
            else:
                a, b = get(f"base_model.model.{m}.lora_A.weight"), get(f"base_model.model.{m}.lora_B.weight")
                delta = scale_rule(cfg["lora_alpha"], r) * (b @ a)
            new[f"{m}.weight"] = w + delta
            new[f"{m}.bias"] = sd[f"{m}.bias"].double()
        model.load_state_dict(new, strict=True)
        with torch.no_grad():
            return model(x.double())

    rs = cfg.get("use_rslora", False)
    right = (lambda al, rr: al / rr ** 0.5) if rs else (lambda al, rr: al / rr)
    wrong = (lambda al, rr: al / rr) if rs else (lambda al, rr: al / rr ** 0.5)
    y_weft = torch.from_numpy(np.load(os.path.join(d, f"y_{kind}.npy"))).double()
    y = rebuild(right)
    err = float((y - y_weft).abs().max() / y.abs().max())
    moved = float((y - model_output(sd, x)).abs().max() / y.abs().max())
    print(f"adapter_{kind}: {len(tensors)} tensors, {cfg['peft_type']} r={r}"
          f"{'' if miss else ', lora_alpha=%g, use_rslora=%s' % (cfg['lora_alpha'], rs)}; torch rebuild vs weft "
          f"max|diff|/max|y| = {err:.3g} (bound 1e-6); the adapter changes the output by {moved:.3g}")
    if not err <= 1e-6:
        failures.append(f"adapter_{kind}: torch's rebuild differs from weft's output by {err:.3g}")
    if moved < 1e-3:
        failures.append(f"adapter_{kind}: the adapter hardly changes the output ({moved:.3g})")
    if not miss:
        bad = float((rebuild(wrong) - y_weft).abs().max() / y.abs().max())
        print(f"  control: the rebuild with the other scaling rule misses by {bad:.3g}")
        if bad <= 1e-4:
            failures.append(f"adapter_{kind}: the control with the wrong scaling also matches ({bad:.3g})")


def model_output(sd, x):
    """The unadapted torch model's float64 output."""
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 4)).double()
    model.load_state_dict({k: v.double() for k, v in sd.items()}, strict=True)
    with torch.no_grad():
        return model(x.double())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exe", required=True, help="the torch_crosscheck executable")
    ap.add_argument("--dir", required=True, help="work directory (created)")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    d = args.dir

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 4))
    x = torch.randn(10, 8)
    with torch.no_grad():
        y32 = model(x)
        y64 = model.double()(x.double())
        model.float()
    sd = model.state_dict()
    write_safetensors(os.path.join(d, "torch_mlp.safetensors"), sd, {"format": "pt"})
    for kind, dt in (("f16", torch.float16), ("bf16", torch.bfloat16)):
        write_safetensors(os.path.join(d, f"torch_mlp_{kind}.safetensors"), {k: v.to(dt) for k, v in sd.items()})
        write_safetensors(os.path.join(d, f"expect_{kind}.safetensors"), {k: v.to(dt).float() for k, v in sd.items()})
    np.save(os.path.join(d, "x.npy"), x.numpy())
    np.save(os.path.join(d, "y32.npy"), y32.numpy())
    np.save(os.path.join(d, "y64.npy"), y64.numpy())

    print(f"torch {torch.__version__}, numpy {np.__version__}; running {args.exe}", flush=True)
    rc = subprocess.call([args.exe, d])
    failures = [] if rc == 0 else [f"torch_crosscheck exited with {rc}"]

    for kind, dt, st in (("f32", torch.float32, "F32"), ("f16", torch.float16, "F16"), ("bf16", torch.bfloat16, "BF16")):
        path = os.path.join(d, f"weft_{kind}.safetensors")
        if not os.path.exists(path):
            failures.append(f"{path} was not written")
            continue
        tensors, meta = read_safetensors(path, failures)
        if meta != {"format": "pt", "writer": "weft"}:
            failures.append(f"{path}: metadata {meta}")
        if set(tensors) != set(sd):
            failures.append(f"{path}: keys {sorted(tensors)} != torch's {sorted(sd)}")
            continue
        differ = 0
        for name, (dtype, shape, b) in tensors.items():
            want = sd[name].to(dt)
            if dtype != st or shape != list(want.shape) or b != raw_bytes(want):
                differ += 1
        print(f"weft_{kind}.safetensors: {len(tensors)} tensors, {differ} differ from torch's {st} bytes")
        if differ:
            failures.append(f"{path}: {differ} tensors differ from torch's own {st} rounding")
        if kind == "f32" and not differ:
            fresh = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16),
                                        torch.nn.ReLU(), torch.nn.Linear(16, 4))
            loaded = {k: torch.from_numpy(np.frombuffer(v[2], dtype="<f4").copy()).reshape(v[1])
                      for k, v in tensors.items()}
            fresh.load_state_dict(loaded, strict=True)
            with torch.no_grad():
                same = torch.equal(fresh(x), y32)
            print(f"torch model loaded from weft_f32.safetensors reproduces its output bit for bit: {same}")
            if not same:
                failures.append("a torch model loaded from weft's file gives a different output")

    for kind in ("lora", "rslora", "miss"):
        check_adapter(d, kind, sd, x, failures)

    for f in failures:
        print("FAIL:", f)
    print("torch cross-check:", "passed" if not failures else f"{len(failures)} failure(s)")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
