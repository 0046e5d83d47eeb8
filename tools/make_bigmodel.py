#!/usr/bin/env python3
"""make_bigmodel.py — a synthetic Hugging Face checkpoint of a real model's shape.

    python3 tools/make_bigmodel.py --shape llama3.1-8b /tmp/kvs-big/llama8b
    python3 tools/make_bigmodel.py --shape qwen2.5-0.5b /tmp/kvs-big/qwen05

Writes config.json, model-0000i-of-0000N.safetensors shards (about --shard-gb
each) and model.safetensors.index.json, laid out as transformers'
save_pretrained does (safetensors header: JSON, padded with spaces to a
multiple of 8, tensors contiguous; index: metadata.total_size + weight_map).
Streaming: each tensor is generated and written in blocks of BLOCK elements,
so memory stays at a few hundred MB whatever the model size. Every file is
written to a temporary name and renamed. An existing complete checkpoint
(same config, every shard of the right size) is left alone.

The weights are not a trained model's. BF16 bit patterns are drawn directly:
random sign and 7 mantissa bits, exponent 2^-8..2^-5, so |w| < 0.0625 with
a standard deviation of about 0.03;
norm weights are 1. Deterministic per tensor name (numpy PCG64 seeded by
the name's CRC32). What the shapes are for: running the engine at the real
size (memory, speed), not its quality.

Shapes (config.json fields as the real checkpoints have them):
  llama3.1-8b   meta-llama/Llama-3.1-8B: 32 layers, hidden 4096, 32 heads,
                8 kv heads, intermediate 14336, vocab 128256, untied lm_head,
                rope llama3 (factor 8, low 1, high 4, original 8192), theta 5e5.
  qwen2.5-0.5b  Qwen/Qwen2.5-0.5B: 24 layers, hidden 896, 14 heads, 2 kv
                heads, intermediate 4864, vocab 151936, tied embeddings,
                q/k/v bias, theta 1e6.
"""
import argparse
import json
import os
import sys
import zlib

import numpy as np

BLOCK = 1 << 26   # elements per generated block (128 MB of bf16)

SHAPES = {
    "llama3.1-8b": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        "hidden_act": "silu", "tie_word_embeddings": False, "attention_bias": False,
        "mlp_bias": False, "torch_dtype": "bfloat16",
    },
    "qwen2.5-0.5b": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 151936,
        "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
        "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "hidden_act": "silu",
        "tie_word_embeddings": True, "use_sliding_window": False, "sliding_window": 32768,
        "max_window_layers": 21, "torch_dtype": "bfloat16",
    },
}


def tensors(cfg):
    """(name, shape, kind) in save_pretrained's order; kind 'w' random, 'one' ones."""
    h, im, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim", h // cfg["num_attention_heads"])
    qd, kd = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    bias = cfg["model_type"] == "qwen2"
    out = [("model.embed_tokens.weight", (v, h), "w")]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (h,), "one"),
                (p + "self_attn.q_proj.weight", (qd, h), "w"),
                (p + "self_attn.k_proj.weight", (kd, h), "w"),
                (p + "self_attn.v_proj.weight", (kd, h), "w")]
        if bias:
            out += [(p + "self_attn.q_proj.bias", (qd,), "w"), (p + "self_attn.k_proj.bias", (kd,), "w"),
                    (p + "self_attn.v_proj.bias", (kd,), "w")]
        out += [(p + "self_attn.o_proj.weight", (h, qd), "w"),
                (p + "post_attention_layernorm.weight", (h,), "one"),
                (p + "mlp.gate_proj.weight", (im, h), "w"),
                (p + "mlp.up_proj.weight", (im, h), "w"),
                (p + "mlp.down_proj.weight", (h, im), "w")]
    out.append(("model.norm.weight", (h,), "one"))
    if not cfg["tie_word_embeddings"]:
        out.append(("lm_head.weight", (v, h), "w"))
    return out


def nelem(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def blocks(name, n, kind):
    """BF16 patterns (uint16) of one tensor, BLOCK at a time."""
    if kind == "one":
        yield np.full(n, 0x3F80, dtype=np.uint16)
        return
    rng = np.random.Generator(np.random.PCG64(zlib.crc32(name.encode())))
    for start in range(0, n, BLOCK):
        r = rng.integers(0, 1 << 16, min(BLOCK, n - start), dtype=np.uint16)
        # sign (bit 15) and mantissa (bits 0-6) random, exponent 119 + 2 random bits
        yield (r & np.uint16(0x807F)) | ((np.uint16(119) + ((r >> np.uint16(7)) & np.uint16(3))) << np.uint16(7))


def header_bytes(entries):
    hdr = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, shape, _ in entries:
        nb = 2 * nelem(shape)
        hdr[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + nb]}
        off += nb
    b = json.dumps(hdr, separators=(",", ":")).encode()
    b += b" " * ((8 - len(b) % 8) % 8)
    return b, off


def write_atomic_text(path, text):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--shard-gb", type=float, default=5.0, help="about this many GB per shard (default 5)")
    ap.add_argument("out", help="checkpoint directory (created)")
    a = ap.parse_args()
    cfg = SHAPES[a.shape]
    ts = tensors(cfg)
    limit = int(a.shard_gb * 1e9)
    shards, cur, size = [], [], 0
    for t in ts:
        nb = 2 * nelem(t[1])
        if cur and size + nb > limit:
            shards.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += nb
    shards.append(cur)
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    os.makedirs(a.out, exist_ok=True)
    cfg_text = json.dumps(cfg, indent=2) + "\n"
    cfg_path = os.path.join(a.out, "config.json")

    def complete():
        try:
            if open(cfg_path).read() != cfg_text:
                return False
            idx = json.load(open(os.path.join(a.out, "model.safetensors.index.json")))
            for sh, fn in zip(shards, names):
                hb, nb = header_bytes(sh)
                if os.path.getsize(os.path.join(a.out, fn)) != 8 + len(hb) + nb:
                    return False
            return len(idx["weight_map"]) == len(ts)
        except (OSError, ValueError, KeyError):
            return False

    if complete():
        print(f"{a.out}: complete {a.shape} checkpoint already there", file=sys.stderr)
        return 0
    total = 0
    for sh, fn in zip(shards, names):
        hb, nb = header_bytes(sh)
        path = os.path.join(a.out, fn)
        tmp = f"{path}.tmp.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(len(hb).to_bytes(8, "little"))
            f.write(hb)
            for name, shape, kind in sh:
                for blk in blocks(name, nelem(shape), kind):
                    f.write(blk.astype("<u2", copy=False).tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        total += nb
        print(f"{path}: {len(sh)} tensors, {(8 + len(hb) + nb) / 1e9:.2f} GB", file=sys.stderr)
    wm = {name: fn for sh, fn in zip(shards, names) for name, _, _ in sh}
    write_atomic_text(os.path.join(a.out, "model.safetensors.index.json"),
                      json.dumps({"metadata": {"total_size": total}, "weight_map": wm}, indent=2) + "\n")
    write_atomic_text(cfg_path, cfg_text)
    params = sum(nelem(s) for _, s, _ in ts)
    print(f"{a.out}: {a.shape}, {params / 1e9:.3f} B parameters, {total / 1e9:.2f} GB bf16 in {len(shards)} shards",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
