#!/usr/bin/env python3
"""torch_prefill.py — the PyTorch side of `make bench`'s model speed row.

A server driven by bench/torch_bench.c over stdin/stdout, one command a line:
    logits PATH   run the tokens, write every position's logits (T x vocab,
                  float32 little-endian) to PATH; answers "ok"
    prefill       run the tokens, logits of the last position only; "ok"
    quit
Started as: torch_prefill.py MODEL_DIR TOKENS_FILE (whitespace-separated ids).
Threads: OMP_NUM_THREADS / OPENBLAS_NUM_THREADS from the caller, and
torch.set_num_threads(THREADS env) once at start.

The forward is the Llama / Qwen2 decoder as transformers defines it
(LlamaForCausalLM / Qwen2ForCausalLM, eager attention), written out with
torch ops rather than imported (transformers is not on this machine):
RMSNorm in f32 (x * rsqrt(mean(x^2) + eps) * w), q/k/v projections (+ bias
for qwen2), RoPE rotate_half with inv_freq = 1 / theta^(2i / head_dim)
(default RoPE only), grouped-query attention (kv heads repeated), causal
softmax(q k^T / sqrt(head_dim)) v, o_proj, residual, SiLU-gated MLP,
residual, final norm, lm_head (tied to the embeddings when
tie_word_embeddings). Not checked against transformers itself here: the
bench checks it against kvstudio's runner, whose per-token losses match
transformers' on tests/data/models (tests/e2e/models.sh). Weights are the
checkpoint's bf16 upcast to f32 (what kvstudio computes with too: f32 tiles
of the same bf16 weights), all ops in f32 under torch.inference_mode().
The safetensors shards are read with numpy (header JSON + raw bytes).
"""
import json
import os
import struct
import sys

import numpy as np
import torch


def load_tensors(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    out = {}
    for fn in files:
        path = os.path.join(d, fn)
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
        mm = np.memmap(path, dtype=np.uint8, mode="r")
        base = 8 + n
        for name, e in hdr.items():
            if name == "__metadata__":
                continue
            a, b = e["data_offsets"]
            raw = mm[base + a:base + b]
            if e["dtype"] == "BF16":
                x = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
            elif e["dtype"] == "F16":
                x = raw.view("<f2").astype(np.float32)
            elif e["dtype"] == "F32":
                x = np.array(raw.view("<f4"))
            else:
                raise SystemExit(f"{path}: tensor {name}: dtype {e['dtype']} (expected BF16, F16 or F32)")
            out[name] = torch.from_numpy(x.reshape(e["shape"]))
    return out


class Model:
    def __init__(self, d):
        c = json.load(open(os.path.join(d, "config.json")))
        if c["model_type"] not in ("llama", "qwen2"):
            raise SystemExit(f"{d}: model_type {c['model_type']} (expected llama or qwen2)")
        rs = c.get("rope_scaling") or {}
        if rs.get("rope_type", rs.get("type", "default")) != "default":
            raise SystemExit(f"{d}: rope_scaling {rs} (only the default RoPE is written here)")
        self.c = c
        self.w = load_tensors(d)
        self.nh, self.nkv = c["num_attention_heads"], c["num_key_value_heads"]
        self.hd = c.get("head_dim") or c["hidden_size"] // self.nh
        self.eps = c["rms_norm_eps"]
        self.lm_head = self.w["model.embed_tokens.weight"] if c.get("tie_word_embeddings") else self.w["lm_head.weight"]
        theta = c.get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.hd, 2, dtype=torch.int64).float() / self.hd))

    def norm(self, x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def forward(self, ids, all_logits):
        W, F = self.w, torch.nn.functional
        T = ids.shape[0]
        x = W["model.embed_tokens.weight"][ids]
        ang = torch.arange(T, dtype=torch.float32)[:, None] * self.inv_freq[None, :]
        emb = torch.cat([ang, ang], dim=-1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((T, T), float("-inf")).triu(1)
        rep = self.nh // self.nkv

        def rope(t):   # (heads, T, hd), rotate_half
            h = self.hd // 2
            rot = torch.cat([-t[..., h:], t[..., :h]], dim=-1)
            return t * cos + rot * sin

        for l in range(self.c["num_hidden_layers"]):
            p = f"model.layers.{l}."
            h = self.norm(x, W[p + "input_layernorm.weight"])
            q = F.linear(h, W[p + "self_attn.q_proj.weight"], W.get(p + "self_attn.q_proj.bias"))
            k = F.linear(h, W[p + "self_attn.k_proj.weight"], W.get(p + "self_attn.k_proj.bias"))
            v = F.linear(h, W[p + "self_attn.v_proj.weight"], W.get(p + "self_attn.v_proj.bias"))
            q = rope(q.view(T, self.nh, self.hd).transpose(0, 1))
            k = rope(k.view(T, self.nkv, self.hd).transpose(0, 1)).repeat_interleave(rep, dim=0)
            v = v.view(T, self.nkv, self.hd).transpose(0, 1).repeat_interleave(rep, dim=0)
            s = torch.matmul(q, k.transpose(1, 2)) / (self.hd ** 0.5) + mask
            a = torch.matmul(torch.softmax(s, dim=-1), v)
            x = x + F.linear(a.transpose(0, 1).reshape(T, self.nh * self.hd), W[p + "self_attn.o_proj.weight"])
            h = self.norm(x, W[p + "post_attention_layernorm.weight"])
            g = F.silu(F.linear(h, W[p + "mlp.gate_proj.weight"])) * F.linear(h, W[p + "mlp.up_proj.weight"])
            x = x + F.linear(g, W[p + "mlp.down_proj.weight"])
        h = self.norm(x if all_logits else x[-1:], W["model.norm.weight"])
        return F.linear(h, self.lm_head)


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: torch_prefill.py MODEL_DIR TOKENS_FILE")
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    m = Model(sys.argv[1])
    ids = torch.tensor([int(t) for t in open(sys.argv[2]).read().split()], dtype=torch.int64)
    print(f"ready torch {torch.__version__}, {torch.get_num_threads()} threads, {ids.shape[0]} tokens", flush=True)
    with torch.inference_mode():
        for line in sys.stdin:
            cmd = line.split()
            if not cmd or cmd[0] == "quit":
                break
            if cmd[0] == "logits":
                m.forward(ids, True).numpy().astype("<f4").tofile(cmd[1])
            elif cmd[0] == "prefill":
                m.forward(ids, False)
            else:
                print(f"error: unknown command {cmd[0]}", flush=True)
                continue
            print("ok", flush=True)


if __name__ == "__main__":
    main()
