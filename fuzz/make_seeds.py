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
tens = [("rabitq.centroids.l0.h0", "F32", [2, 8], f32(cent)), ("vecinfer.smooth.l0", "F32", [8], f32(scale))]
st = safetensors(tens, {"format": "kvstudio-artifacts"})
man = {"format": "kvstudio-artifacts", "method": "rabitq", "version": "0.1.0",
       "trace": {"layers": 2, "kv_heads": 2, "head_dim": 8, "tokens": 4, "source": "tr_valid"},
       "options": {"num_clusters": "2"}, "meta": {},
       "tensors": [{"name": n, "dtype": "F32", "shape": s} for n, _, s, _ in tens]}
out("fuzz_artifacts", "valid", two(json.dumps(man, indent=2), st))
out("fuzz_artifacts", "empty_list", two(json.dumps(dict(man, tensors=[])), safetensors([], {"format": "x"})))
bad = dict(man, tensors=[{"name": "rabitq.centroids.l0.h0", "dtype": "F32", "shape": [8, 2]},
                         {"name": "vecinfer.smooth.l0", "dtype": "F32", "shape": [8]}])
out("fuzz_artifacts", "shape_mismatch", two(json.dumps(bad), st))

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
