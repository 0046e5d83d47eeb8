#!/usr/bin/env python3
"""Write the seed inputs for the fuzz targets whose input is not one file of
tests/data/ (standard library only): fuzz/corpus/<target>/*.
Two-file inputs are [u32 LE length of the first][first][second] (fuzz_split)."""
import json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def two(a, b):
    a = a.encode() if isinstance(a, str) else a
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("<I", len(a)) + a + b


def safetensors(tensors, meta):
    """tensors: [(name, dtype, shape, bytes)] laid out in order, header padded to 8."""
    hdr, off = {}, 0
    if meta:
        hdr["__metadata__"] = meta
    for name, dt, shape, data in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors)


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


# ---- artifacts: manifest.json + artifacts.safetensors (as kvq_artifacts_save writes them)
cent = [((i * 7) % 11 - 5) / 4 for i in range(2 * 8)]
scale = [1 + i / 8 for i in range(8)]
tens = [("rabitq.centroids.l0.h0", "F32", [2, 8], f32(cent)), ("other.smooth.l0", "F32", [8], f32(scale))]
st = safetensors(tens, {"format": "kvstudio-artifacts"})
man = {"format": "kvstudio-artifacts", "method": "rabitq", "version": "0.1.0",
       "trace": {"layers": 2, "kv_heads": 2, "head_dim": 8, "tokens": 4, "source": "tr_valid"},
       "options": {"num_clusters": "2"}, "meta": {},
       "tensors": [{"name": n, "dtype": "F32", "shape": s} for n, _, s, _ in tens]}
out("fuzz_artifacts", "valid", two(json.dumps(man, indent=2), st))
out("fuzz_artifacts", "empty_list", two(json.dumps(dict(man, tensors=[])), safetensors([], {"format": "x"})))
bad = dict(man, tensors=[{"name": "rabitq.centroids.l0.h0", "dtype": "F32", "shape": [8, 2]},
                         {"name": "other.smooth.l0", "dtype": "F32", "shape": [8]}])
out("fuzz_artifacts", "shape_mismatch", two(json.dumps(bad), st))


def art(method, tensors):
    """One artifacts image for a 2-layer, 2-kv-head, head_dim 8 trace (tests/data/tr_valid)."""
    ts = [(n, "F32", s, f32(v)) for n, s, v in tensors]
    m = dict(man, method=method, options={}, tensors=[{"name": n, "dtype": "F32", "shape": s} for n, s, _ in tensors])
    return two(json.dumps(m, indent=1), safetensors(ts, {"format": "kvstudio-artifacts"}))


# one well-formed set per calibrated method, so the fuzzer reaches every plan (issue 17)
eye = [1.0 if i == j else 0.0 for i in range(8) for j in range(8)]
streams = [(l, h) for l in range(2) for h in range(2)]
out("fuzz_artifacts", "ratequant", art("ratequant", [
    ("ratequant.bits", [2], [2, 3]), ("ratequant.target_bits", [1], [2.5]),
    ("ratequant.sensitivity", [2, 4], [0.1, 0.01, 0.1, 1.0, 0.2, 0.02, 0.2, 2.0]),
    ("ratequant.curve", [2, 3], [1.0, 1.4, 0.0, 0.9, 1.3, 0.01]), ("ratequant.rates", [3], [1, 2, 3]),
    ("ratequant.distortion", [2, 3], [0.3, 0.1, 0.03, 0.3, 0.1, 0.03])]))
out("fuzz_artifacts", "spectral", art("spectral", [t for l, h in streams for t in (
    (f"spectral.rotation.l{l}.h{h}", [8, 8], eye), (f"spectral.mean.l{l}.h{h}", [8], [0.1] * 8),
    (f"spectral.eigenvalues.l{l}.h{h}", [8], [8 - i for i in range(8)]))] + [("spectral.d_eff", [2, 2], [5.0] * 4)]))
out("fuzz_artifacts", "vecinfer", art("vecinfer", [
    ("vecinfer.smooth", [2, 8], scale * 2), ("vecinfer.codebook", [2, 4, 4, 2], [((i * 5) % 9 - 4) / 4 for i in range(64)])]))
out("fuzz_artifacts", "commvq", art("commvq", [
    (f"commvq.codebooks.l{l}.h{h}", [4, 4, 8], [((i * 3) % 7 - 3) / 4 for i in range(128)]) for l, h in streams]))
out("fuzz_artifacts", "rabitq", art("rabitq", [
    (f"rabitq.centroids.l{l}.h{h}", [2, 8], cent) for l, h in streams]))
# the crafted cases of issue 17 (refused on load)
out("fuzz_artifacts", "rq_short_sensitivity", art("ratequant", [
    ("ratequant.bits", [2], [2, 3]), ("ratequant.target_bits", [1], [3]),
    ("ratequant.sensitivity", [1, 4], [0.1, 0.01, 0.1, 1.0]), ("ratequant.curve", [2, 3], [1.0, 1.4, 0.0] * 2)]))
out("fuzz_artifacts", "rq_empty_target", art("ratequant", [("ratequant.bits", [2], [2, 3]), ("ratequant.target_bits", [0], [])]))

# ---- model config: config.json + model.safetensors.index.json
cfg = json.load(open(os.path.join(HERE, "..", "sample_data", "refmodel", "config.json")))
idx = open(os.path.join(HERE, "..", "sample_data", "refmodel", "model.safetensors.index.json")).read()
out("fuzz_model_config", "refmodel", two(json.dumps(cfg, indent=1), idx))
c2 = dict(cfg, tie_word_embeddings=True, rope_scaling={"rope_type": "llama3", "factor": 8.0,
          "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 512})
out("fuzz_model_config", "llama3_tied", two(json.dumps(c2), '{"weight_map": {"a": "../x.safetensors"}}'))
c3 = dict(cfg, rope_scaling={"type": "linear", "factor": 2.0})
del c3["head_dim"]
out("fuzz_model_config", "linear_no_head_dim", two(json.dumps(c3), ""))
# issue 17: extreme but parseable fields (refused), the rope_parameters form
c4 = dict(cfg, rms_norm_eps=1e300, rope_theta=1e-300, max_position_embeddings=2 ** 40)
out("fuzz_model_config", "extreme_fields", two(json.dumps(c4), idx))
c5 = dict(cfg, hidden_size=516)
del c5["head_dim"]
out("fuzz_model_config", "odd_no_head_dim", two(json.dumps(c5), idx))
c6 = dict(cfg, rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
del c6["rope_theta"]
out("fuzz_model_config", "rope_parameters", two(json.dumps(c6), idx))

# ---- command scripts
scripts = {
    "info": "info --json\nshow\nshow --json\nmethods\nhelp\nhelp quantize\nversion\n",
    "quantize": "method turboquant_mse\nbits 3\nvalue-bits 2\nquantize --json\nrun\n"
                "quantize --method kivi --bits 2 --layers 0 --tokens 4\nexport json out.json\nexport csv out.csv\n",
    "set": "set use_hadamard=true seed=7 sketch_dim=8 codebook=uniform\nset bit_allocation=2,3 outlier_bits=8\n"
           "quantize method=qjl bits=3 --value-bits=16\n",
    "load": "load npy_keys.npy --values npy_values.npy\ninfo\nload mlx_cache.safetensors\ninfo --json\n"
            "load tr_valid.safetensors --dtype bf16\nload-artifacts nothing\nsave artifacts here\n",
    "quotes": "info 'tr_valid.safetensors' \"--json\"\nset 'method'=\"kivi\" # comment\nbits \\3\n"
              "quantize --bits=4 --method 'turbo quant'\nquit\ninfo\n",
    "errors": "bits 99\n",
}
for k, v in scripts.items():
    out("fuzz_commands", k, v)

# ---- token files
out("fuzz_tokens", "text", "72 101 108 108 111\n32 119\t111 114 108 100 10\n")
for ver, dt, shape in ((1, "<i4", "(5,)"), (2, "<i8", "(1, 5)")):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (dt, shape)
    pre = 10 if ver == 1 else 12
    h += " " * (-(pre + len(h) + 1) % 64) + "\n"
    hl = struct.pack("<H", len(h)) if ver == 1 else struct.pack("<I", len(h))
    vals = struct.pack("<5i" if dt == "<i4" else "<5q", 72, 101, 108, 108, 111)
    out("fuzz_tokens", "npy_v%d_%s" % (ver, dt[1:]), b"\x93NUMPY" + bytes([ver, 0]) + hl + h.encode() + vals)
