#!/usr/bin/env python3
"""Regenerate the malformed-input corpus in tests/data/ (and its README.md).

Pure standard library (struct, json), so it runs without numpy or
safetensors installed; the files are tiny (2 layers, 2 kv heads, 4 tokens,
head_dim 8). Run from anywhere:  python3 tests/data/make_corpus.py
The expectations (status, message substring) live in tests/test_safetensors.c
and tests/test_trace.c; the table below only documents them.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
L, KVH, NH, T, D = 2, 2, 4, 4, 8
SIZES = {"F16": 2, "F32": 4, "BF16": 2, "I32": 4}


def val(l, h, t, d, salt=0):
    # exact in F16: multiples of 1/8 in [-1, 1]
    return ((l * 7 + h * 3 + t * 5 + d + salt) % 17 - 8) / 8.0


def f16(xs):
    return b"".join(struct.pack("<e", x) for x in xs)


def stream(l, heads, rows, salt=0, dim=D, poison=None):
    xs = [val(l, h, t, d, salt) for h in range(heads) for t in range(rows) for d in range(dim)]
    if poison:
        (h, t, d), x = poison
        xs[(h * rows + t) * dim + d] = x
    return f16(xs)


def safetensors(tensors, meta=None, raw_header=None, extra=b""):
    """tensors: list of (name, dtype, shape, bytes[, (begin, end)])."""
    hdr, data, at = {}, b"", 0
    if meta is not None:
        hdr["__metadata__"] = meta
    for t in tensors:
        name, dt, shape, b = t[:4]
        offs = t[4] if len(t) > 4 else (at, at + len(b))
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": list(offs)}
        data += b
        at += len(b)
    h = raw_header if raw_header is not None else json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-(8 + len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data + extra


META = {"format": "kvtrace", "version": "1", "model": "corpus", "layers": str(L), "n_heads": str(NH),
        "n_kv_heads": str(KVH), "head_dim": str(D), "rope_theta": "10000.0", "post_rope": "true",
        "source": "tests/data/make_corpus.py"}


def trace(meta=META, kshape=None, qheads=NH, qpos=None, kpoison=None, vpoison=None, values_only0=False):
    ts = []
    for l in range(L):
        kh, dim = (kshape if kshape and l == 1 else (KVH, D))
        kp = kpoison[1:] if kpoison and kpoison[0] == l else None
        ts.append((f"layers.{l}.keys", "F16", [kh, T, dim], stream(l, kh, T, 0, dim, kp)))
        if not (values_only0 and l > 0):
            vp = vpoison[1:] if vpoison and vpoison[0] == l else None
            ts.append((f"layers.{l}.values", "F16", [kh, T, dim], stream(l, kh, T, 1, dim, vp)))
        ts.append((f"layers.{l}.queries", "F16", [qheads, T, dim], stream(l, qheads, T, 2, dim)))
    if qpos is not None:
        ts.append(("query_positions", "I32", [len(qpos)], struct.pack(f"<{len(qpos)}i", *qpos)))
    ts.append(("tokens", "I32", [T], struct.pack(f"<{T}i", *[65 + t for t in range(T)])))
    return safetensors(ts, meta)


def wide_trace(dim):
    """One layer of head_dim `dim`: loads, but exceeds what the kernels support."""
    meta = dict(META, layers="1", head_dim=str(dim))
    ts = [("layers.0.keys", "F16", [KVH, T, dim], stream(0, KVH, T, 0, dim)),
          ("layers.0.values", "F16", [KVH, T, dim], stream(0, KVH, T, 1, dim)),
          ("layers.0.queries", "F16", [NH, T, dim], stream(0, NH, T, 2, dim))]
    return safetensors(ts, meta)


def huge_trace():
    """F32 keys, values and queries near 3e38: finite, but their squares overflow float."""
    n = KVH * T * D
    big = lambda salt, rows=T, heads=KVH: struct.pack(f"<{heads * rows * D}f",
                                                      *[3e38 * ((i * 7 + salt) % 5 - 2) / 2 for i in range(heads * rows * D)])
    meta = dict(META, layers="1")
    return safetensors([("layers.0.keys", "F32", [KVH, T, D], big(0)), ("layers.0.values", "F32", [KVH, T, D], big(1)),
                        ("layers.0.queries", "F32", [NH, T, D], big(2, heads=NH))], meta)


def artifacts(method, tensors):
    """An artifacts directory image for tr_valid's shape: {file: bytes}."""
    ts = [(name, "F32", shape, struct.pack(f"<{len(xs)}f", *xs)) for name, shape, xs in tensors]
    manifest = {"format": "kvstudio-artifacts", "method": method, "version": "0.1.0",
                "trace": {"path": "tests/data/tr_valid.safetensors", "layers": L, "kv_heads": KVH, "head_dim": D,
                          "tokens": T},
                "options": {}, "meta": {},
                "tensors": [{"name": n, "dtype": "F32", "shape": s} for n, s, _ in tensors]}
    return {"artifacts.safetensors": safetensors(ts, {"format": "kvstudio-artifacts"}),
            "manifest.json": (json.dumps(manifest, indent=2) + "\n").encode()}


RQ_OK = [("ratequant.bits", [L], [2.0] * L), ("ratequant.target_bits", [1], [2.0]),
         ("ratequant.sensitivity", [L, 4], [0.1, 0.01, 0.1, 1.0] * L), ("ratequant.curve", [L, 3], [1.0, 1.4, 0.0] * L)]


def rq_with(name, shape, xs):
    return artifacts("ratequant", [(n, shape, xs) if n == name else (n, s, x) for n, s, x in RQ_OK])


def npy(descr, shape, payload, version=1, fortran=False, magic=b"\x93NUMPY", raw_dict=None, hlen_override=None):
    d = raw_dict if raw_dict is not None else (
        "{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }"
        % (descr, "True" if fortran else "False", ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "")))
    pre = 10 if version == 1 else 12
    h = d.encode() + b" " * (-(pre + len(d) + 1) % 64) + b"\n"
    hl = hlen_override if hlen_override is not None else len(h)
    ln = struct.pack("<H", hl) if version == 1 else struct.pack("<I", hl)
    return magic + bytes([version, 0]) + ln + h + payload


def kv4(salt=0, tokens=T, poison=None):
    xs = [val(l, h, t, d, salt) for l in range(L) for h in range(KVH) for t in range(tokens) for d in range(D)]
    if poison:
        (l, h, t, d), x = poison
        xs[((l * KVH + h) * tokens + t) * D + d] = x
    return b"".join(struct.pack("<f", x) for x in xs)


def missing_layer():
    ts = []
    for l in (0, 2):
        ts.append((f"layers.{l}.keys", "F16", [KVH, T, D], stream(l, KVH, T, 0)))
        ts.append((f"layers.{l}.values", "F16", [KVH, T, D], stream(l, KVH, T, 1)))
    return safetensors(ts, dict(META, layers="3"))


NAN, INF = float("nan"), float("inf")
valid = trace()
mlx_meta = {"0.0": "", "0.1": "", "2.0": "KVCache", "2.1": "KVCache", "format": "mlx"}
mlx_tensors = []
for l in range(L):
    mlx_tensors.append((f"{l}.0", "F16", [1, KVH, T, D], stream(l, KVH, T, 0)))
    mlx_tensors.append((f"{l}.1", "F16", [1, KVH, T, D], stream(l, KVH, T, 1)))
a64, b64 = f16([0.5] * 32), f16([0.25] * 32)

CORPUS = [
    # name, bytes, what it is
    ("st_too_small.safetensors", b"\x05\x00\x00", "3 bytes: shorter than the 8-byte header length"),
    ("st_header_too_large.safetensors", struct.pack("<Q", 200_000_000) + b"{}      ",
     "header length 200,000,000 (> the 100,000,000 limit)"),
    ("st_header_past_end.safetensors", struct.pack("<Q", 1000) + b"{}      ",
     "header length 1000 in a 16-byte file"),
    ("st_truncated.safetensors", valid[: len(valid) * 3 // 5], "a valid trace cut at 60% (inside the data)"),
    ("st_bad_json.safetensors", safetensors([], raw_header=b'{"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]'),
     "header JSON without its closing braces"),
    ("st_not_object.safetensors", safetensors([], raw_header=b"[1, 2]"), "header is a JSON array"),
    ("st_unknown_dtype.safetensors", safetensors([("a", "F12", [32], a64)]), "dtype 'F12'"),
    ("st_shape_mismatch.safetensors", safetensors([("a", "F16", [2, 4, 8], (a64 + b64)[:100])]),
     "shape [2,4,8] F16 needs 128 bytes, data_offsets span 100"),
    ("st_overlap.safetensors", safetensors([("a", "F16", [32], a64), ("b", "F16", [32], b64[:32], (32, 96))]),
     "tensor 'b' [32,96] overlaps tensor 'a' [0,64]"),
    ("st_hole.safetensors", safetensors([("a", "F16", [32], a64 + b"\0" * 8, (0, 64)), ("b", "F16", [32], b64, (72, 136))]),
     "8 unclaimed bytes between tensor 'a' [0,64] and tensor 'b' [72,136]"),
    ("st_trailing.safetensors", safetensors([("a", "F16", [32], a64)], extra=b"\0" * 16),
     "16 bytes after the last tensor (data does not end at the file's end)"),
    ("st_duplicate.safetensors",
     safetensors([], raw_header=b'{"a":{"dtype":"F16","shape":[32],"data_offsets":[0,64]},'
                                b'"a":{"dtype":"F16","shape":[32],"data_offsets":[64,128]}}') + a64 + b64,
     "the name 'a' twice"),
    ("st_negative_shape.safetensors", safetensors([("a", "F16", [-1, 32], a64)]), "shape [-1,32]"),
    ("st_bad_offsets.safetensors", safetensors([("a", "F16", [32], a64, (64, 0))]), "data_offsets [64,0]: begin > end"),
    ("st_overflow.safetensors", safetensors([("a", "F16", [2**32, 2**32, 16], a64, (0, 64))]),
     "shape [2^32,2^32,16]: the byte size overflows 64 bits"),
    ("st_bad_metadata.safetensors", safetensors([("a", "F16", [32], a64)], meta={"format": 1}),
     "__metadata__ value is a number, not a string"),
    ("tr_valid.safetensors", valid,
     "a valid kvtrace: 2 layers, 4 heads, 2 kv heads, 4 tokens, head_dim 8, F16, queries, tokens; "
     "element (l,h,t,d) = ((7l+3h+5t+d+s) mod 17 - 8)/8 with s = 0 keys, 1 values, 2 queries"),
    ("tr_missing_layer.safetensors", missing_layer(), "layers 0 and 2, no layer 1"),
    ("tr_head_dim_mismatch.safetensors", trace(kshape=(KVH, 16)), "layer 1 has head_dim 16, layer 0 has 8"),
    ("tr_kv_heads_mismatch.safetensors", trace(kshape=(3, D)), "layer 1 has 3 kv heads, layer 0 has 2"),
    ("tr_nan_keys.safetensors", trace(kpoison=(1, (1, 3, 5), NAN)), "NaN in layers.1.keys at head 1, token 3, channel 5"),
    ("tr_inf_values.safetensors", trace(vpoison=(0, (0, 2, 7), INF)), "+Inf in layers.0.values at head 0, token 2, channel 7"),
    ("tr_not_kvtrace.safetensors", trace(meta=dict(META, format="pt")), "__metadata__ format 'pt'"),
    ("tr_bad_gqa.safetensors", trace(qheads=3), "3 query heads over 2 kv heads"),
    ("tr_query_pos_range.safetensors", trace(qpos=[0, 1, 4, 3]), "query_positions [0,1,4,3] with 4 tokens"),
    ("tr_meta_mismatch.safetensors", trace(meta=dict(META, layers="3")), "__metadata__ layers '3', tensors give 2"),
    ("tr_values_gap.safetensors", trace(values_only0=True), "values in layer 0 only"),
    ("tr_escape_meta.safetensors",
     trace(meta=dict(META, model="\x1b]0;owned\x07\x1b[2Jmodel", source="\u009b31mred\x1b[0m\nsecond line")),
     "valid, but __metadata__ model and source hold OSC/CSI escape sequences, a C1 CSI and a newline"),
    ("st_escape_dtype.safetensors", safetensors([("a\x1b[31m", "F\x1b[2J", [32], a64)]),
     "tensor name and dtype hold escape sequences (dtype unknown)"),
    ("tr_head_dim_300.safetensors", wide_trace(300), "valid, 1 layer, 2 kv heads, 4 tokens, head_dim 300 (> 256)"),
    ("tr_head_dim_512.safetensors", wide_trace(512), "valid, 1 layer, 2 kv heads, 4 tokens, head_dim 512 (> 256)"),
    ("tr_huge_values.safetensors", huge_trace(), "1 layer, F32 values near 3e38: finite, but too large for float math"),
    ("mlx_cache.safetensors", safetensors(mlx_tensors, mlx_meta),
     "a valid mlx_lm prompt cache: tensors {L}.0 / {L}.1 of shape [1, 2, 4, 8], F16, same values as tr_valid"),
    ("mlx_quantized.safetensors",
     safetensors([("0.0.0", "F16", [32], a64), ("0.1.0", "F16", [32], b64)], {"format": "mlx"}),
     "a quantized mlx_lm cache ({L}.{0,1}.{i} tensors): unsupported"),
    ("npy_keys.npy", npy("<f4", (L, KVH, T, D), kv4(0)), "valid keys, v1.0 '<f4' [2, 2, 4, 8], same values as tr_valid"),
    ("npy_values.npy", npy("<f4", (L, KVH, T, D), kv4(1)), "valid values matching npy_keys.npy"),
    ("npy_bad_magic.npy", b"\x93NUMPX" + npy("<f4", (L, KVH, T, D), kv4(0))[6:], "magic \\x93NUMPX"),
    ("npy_truncated.npy", npy("<f4", (L, KVH, T, D), kv4(0))[:-100], "data 100 bytes short"),
    ("npy_wrong_ndim.npy", npy("<f4", (KVH, T, D), kv4(0)[: KVH * T * D * 4]), "3-D [2, 4, 8]"),
    ("npy_values_mismatch.npy", npy("<f4", (L, KVH, T + 1, D), kv4(1, T + 1)), "values with 5 tokens (keys have 4)"),
    ("npy_bad_header.npy", npy("", (), kv4(0), raw_dict="{'descr': '<f4', 'fortran_order': False, }"),
     "header dict without 'shape'"),
    ("npy_object.npy", npy("|O", (L, KVH, T, D), kv4(0)), "descr '\\|O' (pickled objects)"),
    ("npy_header_past_end.npy", npy("<f4", (1,), b"", hlen_override=5000), "header length 5000 in a 128-byte file"),
    ("npy_nan.npy", npy("<f4", (L, KVH, T, D), kv4(0, poison=((1, 0, 2, 3), NAN))), "NaN at layer 1, head 0, token 2, channel 3"),
    ("npy_version4.npy", npy("<f4", (L, KVH, T, D), kv4(0), version=4), "format version 4.0"),
]


# Crafted artifacts directories (issue 17): each checked by tests/e2e/badinput.sh.
ARTIFACTS = [
    ("art_rq_short_sensitivity", rq_with("ratequant.sensitivity", [1, 4], [0.1, 0.01, 0.1, 1.0]),
     "ratequant.sensitivity [1, 4] for 2 layers"),
    ("art_rq_short_curve", rq_with("ratequant.curve", [1, 3], [1.0, 1.4, 0.0]), "ratequant.curve [1, 3] for 2 layers"),
    ("art_rq_empty_target", rq_with("ratequant.target_bits", [0], []), "ratequant.target_bits of shape [0]"),
    ("art_rq_bits_range", rq_with("ratequant.bits", [L], [2.0, 100.0]), "ratequant.bits gives layer 1 100 bits"),
    ("art_rabitq_huge", artifacts("rabitq", [(f"rabitq.centroids.l{l}.h{h}", [2, D], [1e30] * (2 * D))
                                             for l in range(L) for h in range(KVH)]),
     "rabitq centroids of 1e30 (finite, their squares are not)"),
    ("art_spectral_short", artifacts("spectral", [("spectral.rotation.l0.h0", [D, 4], [0.1] * (D * 4))]),
     "spectral.rotation.l0.h0 [8, 4] for head_dim 8"),
]


def main():
    lines = ["# tests/data — malformed (and a few valid) inputs for the trace readers", "",
             "Regenerate with `python3 tests/data/make_corpus.py` (standard library only).",
             "The tests (`tests/test_safetensors.c`, `tests/test_trace.c`) open every file and assert",
             "the status and a distinctive substring of the one-line message.", "",
             "| file | bytes | what it is |", "| --- | --- | --- |"]
    for name, data, what in CORPUS:
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
        lines.append(f"| `{name}` | {len(data)} | {what} |")
    for name, files, what in ARTIFACTS:
        os.makedirs(os.path.join(HERE, name), exist_ok=True)
        for fn, data in files.items():
            with open(os.path.join(HERE, name, fn), "wb") as f:
                f.write(data)
        lines.append(f"| `{name}/` | {sum(len(d) for d in files.values())} | artifacts directory: {what} |")
    with open(os.path.join(HERE, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
