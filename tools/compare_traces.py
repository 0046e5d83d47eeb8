#!/usr/bin/env python3
"""Compare two kvtrace files (TRACE_FORMAT.md) tensor by tensor; numpy only.

    python3 tools/compare_traces.py A.safetensors B.safetensors [--tokens N] [--ulps 2] [--atol 0.0078] [--rel 0.00049]

For every layer's keys, values and queries present in both, over the first N
positions (default: the shorter trace): max |a-b|, the largest error in F16
ulps of the larger magnitude, the share of identical F16 values and the
relative Frobenius error. Token ids must match. Exit status 0 when every
element satisfies |a-b| <= ulps * ulp16(max(|a|,|b|)) + atol (defaults 2 ulps,
2^-7) and every tensor's relative Frobenius error is <= rel (default 2^-11,
the F16 unit roundoff): "equal within F16 rounding". 1 otherwise, 2 on a bad
file or without numpy.
"""
import argparse
import json
import struct
import sys

try:
    import numpy as np
except ImportError:
    print("compare_traces: needs the Python package numpy (apt-get install python3-numpy, "
          "or pip install numpy)", file=sys.stderr)
    sys.exit(2)

DTYPES = {"F16": np.float16, "BF16": None, "F32": np.float32, "I32": np.int32, "I64": np.int64}


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (hl,) = struct.unpack("<Q", data[:8])
    if hl > len(data) - 8:
        raise SystemExit(f"{path}: header length {hl} past the end of the file")
    hdr = json.loads(data[8:8 + hl])
    meta = hdr.pop("__metadata__", {})
    base = 8 + hl
    out = {}
    for name, t in hdr.items():
        s, e = t["data_offsets"]
        raw = data[base + s:base + e]
        if t["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif t["dtype"] in DTYPES:
            arr = np.frombuffer(raw, dtype=np.dtype(DTYPES[t["dtype"]]).newbyteorder("<"))
        else:
            raise SystemExit(f"{path}: tensor {name} has dtype {t['dtype']} (not handled here)")
        out[name] = arr.reshape(t["shape"])
    return meta, out


def ulp16(x):
    """Spacing of F16 numbers at |x| (normal range; 2^-24 below it)."""
    ax = np.maximum(np.abs(x), 2.0 ** -14)
    return 2.0 ** (np.floor(np.log2(ax)) - 10)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--tokens", type=int, default=0)
    p.add_argument("--ulps", type=float, default=2.0)
    p.add_argument("--atol", type=float, default=2.0 ** -7)
    p.add_argument("--rel", type=float, default=2.0 ** -11, help="max relative Frobenius error per tensor")
    args = p.parse_args(argv)
    ma, ta = load(args.a)
    mb, tb = load(args.b)
    for k in ("layers", "n_heads", "n_kv_heads", "head_dim", "post_rope"):
        if ma.get(k) != mb.get(k):
            print(f"metadata {k}: {ma.get(k)!r} vs {mb.get(k)!r}")
            return 1
    na = ta["layers.0.keys"].shape[1]
    nb = tb["layers.0.keys"].shape[1]
    n = min(na, nb) if args.tokens <= 0 else args.tokens
    if n > min(na, nb):
        print(f"--tokens {n} but the traces hold {na} and {nb}")
        return 2
    ok = True
    if "tokens" in ta and "tokens" in tb:
        same = np.array_equal(ta["tokens"][:n], tb["tokens"][:n])
        print(f"tokens: {'equal' if same else 'DIFFER'} over {n}")
        ok &= bool(same)
    for k in ("bits_per_byte", "bits_per_token"):
        if k in ma or k in mb:
            print(f"{k}: {ma.get(k)} vs {mb.get(k)} (each over its own length)")
    print(f"{'tensor':<20} {'max|a-b|':>10} {'max ulps':>9} {'identical':>10} {'rel frob':>10}  ok")
    worst = {}
    L = int(ma["layers"])
    for l in range(L):
        for kind in ("keys", "values", "queries"):
            name = f"layers.{l}.{kind}"
            if name not in ta or name not in tb:
                continue
            a = ta[name][:, :n].astype(np.float64)
            b = tb[name][:, :n].astype(np.float64)
            d = np.abs(a - b)
            big = np.maximum(np.abs(a), np.abs(b))
            ulps = d / ulp16(big)
            tol = args.ulps * ulp16(big) + args.atol
            ident = float(np.mean(a == b))
            rel = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
            good = bool(np.all(d <= tol)) and rel <= args.rel
            print(f"{name:<20} {d.max():10.3e} {ulps.max():9.1f} {ident:10.4f} {rel:10.2e}  {'yes' if good else 'NO'}")
            w = worst.setdefault(kind, [0.0, 0.0])
            w[0] = max(w[0], float(d.max()))
            w[1] = max(w[1], rel)
            ok &= good
    for kind, (dmax, rel) in worst.items():
        print(f"worst {kind}: max|a-b| {dmax:.3e}, rel frob {rel:.2e}")
    print("RESULT: " + ("equal within F16 rounding" if ok else "NOT equal within F16 rounding") +
          f" ({args.ulps:g} ulps + {args.atol:g} per element, relative Frobenius <= {args.rel:.3g}), {n} tokens")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
