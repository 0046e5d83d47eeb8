#!/usr/bin/env python3
"""Tiny random-init checkpoints of each architecture kvstudio runs, and
transformers' own per-token NLL on them (the reference `make test` checks).

Run on a machine with torch and transformers (no network needed):
    python3 tests/data/models/make_refs.py OUTDIR
OUTDIR/<name>/ gets config.json + model.safetensors (bf16, save_pretrained),
OUTDIR/refs.json the fp32 eager NLL (weights upcast from the saved bf16) of
tokens.txt under each, OUTDIR/debug/<name>.npz hidden states and logits.
Weights are drawn by this script (fixed seed), scaled so that attention and
next-token distributions are far from uniform.
"""
import json
import math
import os
import sys
import traceback

import numpy as np
import torch
import transformers
from transformers import (AutoModelForCausalLM, Gemma2Config, Gemma3TextConfig, LlamaConfig, MistralConfig,
                          Phi3Config, Qwen2Config, Qwen3Config)

HERE = os.path.dirname(os.path.abspath(__file__))
COMMON = dict(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=64, max_position_embeddings=256, rms_norm_eps=1e-6,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)
HALF = COMMON["head_dim"] // 2


def models():
    """(name, config class, extra kwargs, rope dict or None)."""
    yield "llama", LlamaConfig, dict(tie_word_embeddings=False, rope_theta=10000.0), None
    yield "llama-linear", LlamaConfig, dict(tie_word_embeddings=True), \
        {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    yield "llama-llama3", LlamaConfig, dict(tie_word_embeddings=True), \
        {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
         "original_max_position_embeddings": 32, "rope_theta": 10000.0}
    yield "llama-yarn", LlamaConfig, dict(tie_word_embeddings=True, max_position_embeddings=128), \
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32, "rope_theta": 10000.0}
    yield "mistral", MistralConfig, dict(tie_word_embeddings=True, sliding_window=16, rope_theta=10000.0), None
    yield "qwen2", Qwen2Config, dict(tie_word_embeddings=True, rope_theta=10000.0), None
    yield "qwen3", Qwen3Config, dict(tie_word_embeddings=True, rope_theta=10000.0, attention_bias=False), None
    yield "gemma2", Gemma2Config, dict(sliding_window=16, query_pre_attn_scalar=32, final_logit_softcapping=8.0,
                                       attn_logit_softcapping=5.0, hidden_activation="gelu_pytorch_tanh",
                                       rope_theta=10000.0), None
    yield "gemma3", Gemma3TextConfig, dict(sliding_window=16, query_pre_attn_scalar=32,
                                           layer_types=["sliding_attention", "full_attention"]), \
        {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
         "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0}}
    yield "phi3", Phi3Config, dict(tie_word_embeddings=True, rope_theta=10000.0), None
    g = torch.Generator().manual_seed(7)
    short = (1.0 + torch.rand(HALF, generator=g)).tolist()
    long = (1.0 + 3.0 * torch.rand(HALF, generator=g)).tolist()
    yield "phi3-longrope", Phi3Config, dict(tie_word_embeddings=True, max_position_embeddings=512), \
        {"rope_type": "longrope", "short_factor": short, "long_factor": long,
         "original_max_position_embeddings": 128, "rope_theta": 10000.0}


def make_config(cls, extra, rope):
    kw = dict(COMMON)
    kw.update(extra)
    if cls is Phi3Config:   # Phi3 has no head_dim argument: hidden / heads
        kw.pop("head_dim")
        kw["num_attention_heads"] = 2
        kw["num_key_value_heads"] = 1
    if rope is not None:
        try:
            cfg = cls(rope_parameters=rope, **kw)
        except TypeError:   # transformers 4: rope_scaling + rope_theta
            if "sliding_attention" in rope:
                raise
            r = dict(rope)
            theta = r.pop("rope_theta", 10000.0)
            cfg = cls(rope_scaling=r, rope_theta=theta, **kw)
    else:
        cfg = cls(**kw)
    return cfg


def init_weights(model, model_type, seed):
    g = torch.Generator().manual_seed(seed)
    gemma = model_type.startswith("gemma")
    H = model.config.hidden_size
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                base = 0.0 if gemma else 1.0     # Gemma's RMSNorm scales by (1 + w)
                w = base + 0.1 * torch.randn(p.shape, generator=g)
            elif name.endswith(".bias"):
                w = 0.1 * torch.randn(p.shape, generator=g)
            elif "embed_tokens" in name or name.startswith("lm_head"):
                # Gemma multiplies embeddings by sqrt(hidden) and ties lm_head to
                # them: a smaller std keeps the token's own logit from dominating.
                std = (1.0 if gemma else 3.0) / math.sqrt(H)
                w = std * torch.randn(p.shape, generator=g)
            elif p.ndim == 2:
                gain = 2.0 if any(k in name for k in ("q_proj", "k_proj", "qkv_proj")) else 1.0
                w = gain / math.sqrt(p.shape[1]) * torch.randn(p.shape, generator=g)
            else:
                raise SystemExit(f"no init rule for {name} {tuple(p.shape)}")
            p.copy_(w.to(p.dtype))


def main():
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "debug"), exist_ok=True)
    with open(os.path.join(HERE, "tokens.txt")) as f:
        ids = [int(t) for t in f.read().split()]
    x = torch.tensor([ids])
    refs = {"transformers": transformers.__version__, "torch": torch.__version__,
            "tokens": "tokens.txt", "n_tokens": len(ids),
            "nll": "per-token -ln p(tok[i+1] | tok[0..i]), i = 0..n-2, fp32 eager forward, weights from the bf16 checkpoint",
            "models": {}}
    failed = []
    for seed, (name, cls, extra, rope) in enumerate(models()):
        try:
            torch.manual_seed(1000 + seed)
            cfg = make_config(cls, extra, rope)
            cfg._attn_implementation = "eager"
            model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
            init_weights(model, cfg.model_type, 1000 + seed)
            d = os.path.join(out, name)
            model.to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
            del model
            ref = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
            ref.eval()
            with torch.no_grad():
                o = ref(input_ids=x, output_hidden_states=True, use_cache=False)
            logits = o.logits[0].double()
            lp = torch.log_softmax(logits[:-1], dim=-1)
            nll = (-lp.gather(1, x[0, 1:, None]).squeeze(1)).tolist()
            p = torch.softmax(logits, -1)
            ent = float((-(p * torch.log(p.clamp_min(1e-300))).sum(-1)).mean())
            rot = {}
            for mod_name, mod in ref.named_modules():
                if hasattr(mod, "inv_freq") and torch.is_tensor(getattr(mod, "inv_freq")):
                    rot[mod_name or "root"] = mod.inv_freq.float().cpu().numpy()
                    rot[(mod_name or "root") + ".scaling"] = np.array(float(getattr(mod, "attention_scaling", 1.0)))
                for k, v in mod.named_buffers(recurse=False):
                    if k.endswith("inv_freq") and k != "inv_freq":
                        rot[f"{mod_name}.{k}"] = v.float().cpu().numpy()
            np.savez(os.path.join(out, "debug", name + ".npz"), logits=o.logits[0].float().numpy(),
                     **{f"hidden{i}": h[0].float().numpy() for i, h in enumerate(o.hidden_states)},
                     **{"rope:" + k: v for k, v in rot.items()})
            refs["models"][name] = {"model_type": cfg.model_type, "nll": nll,
                                    "mean_nats": sum(nll) / len(nll), "mean_bits": sum(nll) / len(nll) / math.log(2),
                                    "mean_entropy_nats": ent, "uniform_nats": math.log(cfg.vocab_size)}
            print(f"{name:14s} {cfg.model_type:10s} mean nll {sum(nll)/len(nll):.4f} nats, entropy {ent:.3f} "
                  f"(uniform {math.log(cfg.vocab_size):.3f})", flush=True)
            del ref
        except Exception:
            failed.append(name)
            print(f"{name}: FAILED", flush=True)
            traceback.print_exc()
    with open(os.path.join(out, "refs.json"), "w") as f:
        json.dump(refs, f, indent=1)
    if failed:
        print("failed:", " ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
