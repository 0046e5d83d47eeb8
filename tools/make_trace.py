#!/usr/bin/env python3
"""Write a synthetic kvtrace file (docs/TRACE_FORMAT.md) of any shape, streaming.

Keys and values are Gaussian with per-channel scales; a few key channels per
(layer, kv head) are outliers (scale x8 and a mean offset), as in the keys of
real models after RoPE. Queries (optional) are Gaussian and lean on the same
outlier channels, so q . k is dominated by them as in real traces. The file is
written one (layer, kv head) block at a time, so memory stays at one block
whatever the trace size; it goes to OUT.tmp.PID and is renamed when complete.

    python3 tools/make_trace.py --out s1.safetensors --layers 32 --heads 32 \\
        --kv-heads 8 --tokens 8192 --queries 256

Needs numpy. Same arguments and seed give the same bytes.
"""
import argparse
import json
import os
import struct
import sys

try:
    import numpy as np
except ImportError:
    print("make_trace: needs the Python package numpy (apt-get install python3-numpy, "
          "or pip install numpy)", file=sys.stderr)
    sys.exit(2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output .safetensors (kvtrace v1)")
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--heads", type=int, default=32, help="query heads (n_heads)")
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=256,
                   help="query rows per query head, evenly spaced positions ending at the last token (0 = none)")
    p.add_argument("--no-values", action="store_true", help="keys only")
    p.add_argument("--outliers", type=int, default=4, help="outlier key channels per (layer, kv head)")
    p.add_argument("--dtype", default="F16", choices=["F16", "F32"])
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    def bad(msg):   # one line, as every kvstudio tool reports bad input
        print(f"make_trace: {msg}", file=sys.stderr)
        sys.exit(2)
    for name in ("layers", "heads", "kv_heads", "tokens", "head_dim"):
        if getattr(a, name) < 1:
            bad(f"--{name.replace('_', '-')} is {getattr(a, name)}, expected at least 1")
    if a.heads % a.kv_heads:
        bad(f"--heads {a.heads} is not a multiple of --kv-heads {a.kv_heads}")
    if not 0 <= a.queries <= a.tokens:
        bad(f"--queries {a.queries}, expected 0..{a.tokens} (--tokens)")
    if not 0 <= a.outliers <= a.head_dim:
        bad(f"--outliers {a.outliers}, expected 0..{a.head_dim} (--head-dim)")
    return a


def tensor_plan(a):
    """[(name, dtype, shape)] in file order."""
    plan = []
    for layer in range(a.layers):
        plan.append((f"layers.{layer}.keys", a.dtype, [a.kv_heads, a.tokens, a.head_dim]))
        if not a.no_values:
            plan.append((f"layers.{layer}.values", a.dtype, [a.kv_heads, a.tokens, a.head_dim]))
        if a.queries:
            plan.append((f"layers.{layer}.queries", a.dtype, [a.heads, a.queries, a.head_dim]))
    if a.queries:
        plan.append(("query_positions", "I32", [a.queries]))
    return plan


ESIZE = {"F16": 2, "F32": 4, "I32": 4}


def header_bytes(a, plan):
    hdr, off = {}, 0
    for name, dt, shape in plan:
        n = ESIZE[dt]
        for s in shape:
            n *= s
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    hdr["__metadata__"] = {
        "format": "kvtrace", "version": "1", "model": "synthetic (tools/make_trace.py)",
        "layers": str(a.layers), "n_heads": str(a.heads), "n_kv_heads": str(a.kv_heads),
        "head_dim": str(a.head_dim), "rope_theta": "10000", "post_rope": "true",
        "source": f"make_trace.py seed {a.seed}, {a.outliers} outlier key channels",
    }
    js = json.dumps(hdr, separators=(",", ":")).encode()
    js += b" " * (-(8 + len(js)) % 8)   # data starts 8-aligned, as kvq_st_write pads
    return struct.pack("<Q", len(js)) + js, off


def query_positions(a):
    # evenly spaced, the last one at the last token: every prefix length is sampled
    return np.array([((i + 1) * a.tokens) // a.queries - 1 for i in range(a.queries)], dtype="<i4")


class Head:
    """Channel statistics of one (layer, kv head), drawn from its own seed."""

    def __init__(self, a, layer, kv_head):
        rng = np.random.default_rng([a.seed, layer, kv_head, 1])
        d = a.head_dim
        self.k_scale = np.exp(rng.normal(0.0, 0.35, d)).astype(np.float32)
        self.k_mean = np.zeros(d, dtype=np.float32)
        self.outl = rng.choice(d, size=a.outliers, replace=False)
        self.k_scale[self.outl] *= 8.0
        self.k_mean[self.outl] = rng.normal(0.0, 6.0, a.outliers).astype(np.float32)
        self.v_scale = np.exp(rng.normal(0.0, 0.2, d)).astype(np.float32) * 0.5
        self.q_scale = np.exp(rng.normal(0.0, 0.3, d)).astype(np.float32)
        self.q_scale[self.outl] *= 3.0


def block(a, layer, head, which, stats, dt):
    """One head's rows of tensor `which` as little-endian bytes."""
    rng = np.random.default_rng([a.seed, layer, head, 2 + which])
    rows = a.queries if which == 2 else a.tokens
    x = rng.standard_normal((rows, a.head_dim), dtype=np.float32)
    if which == 0:
        x *= stats.k_scale
        x += stats.k_mean
    elif which == 1:
        x *= stats.v_scale
    else:
        x *= stats.q_scale
    return x.astype(dt).tobytes()


def write(a):
    plan = tensor_plan(a)
    head, data_len = header_bytes(a, plan)
    dt = np.dtype("<f2" if a.dtype == "F16" else "<f4")
    per_kv = a.heads // a.kv_heads
    tmp = f"{a.out}.tmp.{os.getpid()}"
    done = 0
    try:
        with open(tmp, "wb") as f:
            f.write(head)
            for name, _, _ in plan:
                if name == "query_positions":
                    f.write(query_positions(a).tobytes())
                    continue
                layer, kind = int(name.split(".")[1]), name.split(".")[2]
                which = {"keys": 0, "values": 1, "queries": 2}[kind]
                nh = a.heads if which == 2 else a.kv_heads
                for h in range(nh):
                    stats = Head(a, layer, h // per_kv if which == 2 else h)
                    buf = block(a, layer, h, which, stats, dt)
                    f.write(buf)
                    done += len(buf)
                if sys.stderr.isatty():
                    print(f"\rmake_trace: {done / 1e9:.2f} / {data_len / 1e9:.2f} GB", end="", file=sys.stderr)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, a.out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return len(head) + data_len


def main(argv=None):
    a = parse_args(argv)
    n = write(a)
    print(f"{a.out}: {a.layers} layers, {a.heads} heads, {a.kv_heads} kv heads, {a.tokens} tokens, "
          f"head_dim {a.head_dim}, {a.queries} queries, {n / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
