#!/usr/bin/env python3
"""Capture a kvtrace file (TRACE_FORMAT.md) from a Hugging Face causal LM.

Runs the model once over the first N tokens of a text file and writes, per
layer, the keys and values of the returned KV cache (post-RoPE, as stored) and
the queries after RoPE at every position, as F16, plus token ids, query
positions and metadata (incl. the model's loss on the text).

Queries are not returned by transformers, so a forward hook on each attention
module recomputes them from the hook's inputs: q_proj(hidden_states) (+ q_norm
where the architecture has one), then the module's own apply_rotary_pos_emb
with the (cos, sin) the decoder passed in.

    python3 tools/capture_kv.py --model sample_data/refmodel \\
        --text sample_data/texts/textwrap-1k.py --out code.safetensors --tokens 1024 --bytes

Needs torch, transformers and safetensors. --bytes feeds raw UTF-8 bytes as
token ids (byte-level models such as sample_data/refmodel); otherwise the
model directory's tokenizer is used.
"""
import argparse
import math
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="Hugging Face checkpoint directory (or hub id)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--text", help="text file to run")
    g.add_argument("--token-ids", help="file of whitespace-separated token ids (models without a tokenizer)")
    p.add_argument("--out", required=True, help="output .safetensors (kvtrace v1)")
    p.add_argument("--tokens", type=int, default=1024, help="at most this many tokens (default 1024)")
    p.add_argument("--bytes", action="store_true", help="token id = byte value (byte-level models)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="compute dtype (default float32)")
    p.add_argument("--device", default=None, help="cuda, cpu, mps (default: cuda when available)")
    p.add_argument("--no-queries", action="store_true", help="skip the query hook")
    return p.parse_args(argv)


def rope_theta_of(cfg):
    theta = getattr(cfg, "rope_theta", None)
    if theta is None:
        rp = getattr(cfg, "rope_parameters", None) or {}
        if isinstance(rp, dict):
            theta = rp.get("rope_theta")
    return float(theta) if theta is not None else 0.0


def layer_kv(past, i):
    """(keys, values) of layer i from any transformers cache flavour: (1, n_kv, n, d)."""
    if hasattr(past, "layers"):                       # transformers >= 4.56 / 5: DynamicCache.layers
        return past.layers[i].keys, past.layers[i].values
    if hasattr(past, "key_cache"):                    # 4.36 .. 4.55 DynamicCache
        return past.key_cache[i], past.value_cache[i]
    return past[i][0], past[i][1]                     # legacy tuple of tuples


class QueryHook:
    """Recomputes post-RoPE queries (and keys, values) from an attention module's inputs."""

    def __init__(self, module, head_dim, n_heads, n_kv):
        import torch  # noqa: F401
        self.module = module
        self.head_dim = head_dim
        self.n_heads, self.n_kv = n_heads, n_kv
        self.q = self.k = self.v = None
        mod = sys.modules[type(module).__module__]
        self.apply_rope = getattr(mod, "apply_rotary_pos_emb", None)
        if self.apply_rope is None:
            raise SystemExit(f"capture_kv: {type(module).__name__} has no apply_rotary_pos_emb in its module; "
                             "queries cannot be recomputed (use --no-queries)")
        # kvtrace scores are q.k / sqrt(head_dim): fold a different scale
        # (Gemma's query_pre_attn_scalar) into the queries.
        scaling = getattr(module, "scaling", None)
        self.q_scale = 1.0 if scaling is None else float(scaling) * math.sqrt(head_dim)
        self.handle = module.register_forward_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs, output):
        hs = kwargs.get("hidden_states", args[0] if args else None)
        pe = kwargs.get("position_embeddings")
        if pe is None and len(args) > 1 and isinstance(args[1], tuple):
            pe = args[1]
        if hs is None or pe is None:
            raise SystemExit("capture_kv: the attention module was not given hidden_states and "
                             "position_embeddings; this transformers version is not supported (use --no-queries)")
        cos, sin = pe
        b, n, _ = hs.shape
        d = self.head_dim
        if hasattr(module, "qkv_proj"):               # Phi3: one fused projection, q rows first
            qkv = module.qkv_proj(hs)
            qd, kd = self.n_heads * d, self.n_kv * d
            q, k, v = qkv[..., :qd], qkv[..., qd:qd + kd], qkv[..., qd + kd:]
        else:
            q, k, v = module.q_proj(hs), module.k_proj(hs), module.v_proj(hs)
        q, k, v = q.view(b, n, -1, d), k.view(b, n, -1, d), v.view(b, n, -1, d)
        if hasattr(module, "q_norm"):                 # Qwen3, Gemma3: per-head norm before RoPE
            q = module.q_norm(q)
        if hasattr(module, "k_norm"):
            k = module.k_norm(k)
        q, k = self.apply_rope(q.transpose(1, 2), k.transpose(1, 2), cos, sin)   # (b, heads, n, d)
        if self.q_scale != 1.0:
            q = q * self.q_scale
        self.q, self.k, self.v = q.detach(), k.detach(), v.transpose(1, 2).detach()

    def remove(self):
        self.handle.remove()


def layer_windows(cfg, layers):
    """Per layer: the sliding window its queries see (0 = all positions)."""
    out = []
    types = getattr(cfg, "layer_types", None)
    for i, layer in enumerate(layers):
        w = getattr(layer.self_attn, "sliding_window", "absent")
        if w == "absent":
            if types is not None:
                w = cfg.sliding_window if types[i] == "sliding_attention" else None
            else:
                w = getattr(cfg, "sliding_window", None)
        out.append(int(w or 0))
    return out


def require_packages():
    """One line naming what is missing instead of an ImportError traceback."""
    import importlib
    missing = []
    for mod in ("torch", "transformers", "safetensors"):
        try:
            importlib.import_module(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        print(f"capture_kv: needs the Python package{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
              f"(pip install {' '.join(missing)})", file=sys.stderr)
        sys.exit(2)


def main(argv=None):
    a = parse_args(argv)
    require_packages()
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, a.dtype)

    cfg = AutoConfig.from_pretrained(a.model)
    byte_level = a.bytes or str(getattr(cfg, "tokenizer", "")).startswith("bytes")
    raw = open(a.text, "rb").read() if a.text else b""
    if a.token_ids:
        with open(a.token_ids) as f:
            ids = [int(t) for t in f.read().split()][: a.tokens]
    elif byte_level:
        ids = list(raw[: a.tokens])
    else:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(a.model)
        ids = tok(raw.decode("utf-8", errors="replace"), add_special_tokens=True)["input_ids"][: a.tokens]
    if len(ids) < 2:
        raise SystemExit(f"capture_kv: {a.text or a.token_ids}: {len(ids)} tokens (need at least 2)")
    if max(ids) >= cfg.vocab_size:
        raise SystemExit(f"capture_kv: token {max(ids)} >= vocab_size {cfg.vocab_size} (byte-level? try without --bytes)")

    # sdpa has no attention soft-capping (Gemma2): eager computes what the model defines
    kw = {"attn_implementation": "eager"} if getattr(cfg, "attn_logit_softcapping", None) else {}
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, **kw) if _has_dtype_kw() else \
        AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=dtype, **kw)
    model.to(device).eval()
    layers = model.model.layers
    n_heads = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    hooks = [] if a.no_queries else [QueryHook(l.self_attn, head_dim, n_heads, n_kv) for l in layers]

    x = torch.tensor([ids], dtype=torch.long, device=device)
    with torch.no_grad():
        out = model(input_ids=x, use_cache=True)
    logits = out.logits[0].float()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    nll = -logp.gather(1, x[0, 1:, None]).squeeze(1)
    bits = float(nll.mean().item() / math.log(2))

    tensors = {}
    for i in range(len(layers)):
        k, v = layer_kv(out.past_key_values, i)
        if k.shape[2] != len(ids):   # a sliding layer's cache keeps its window only: every position from the hook
            if not hooks:
                raise SystemExit(f"capture_kv: layer {i} cached {k.shape[2]} of {len(ids)} positions (sliding window); "
                                 "run without --no-queries to recompute them")
            k, v = hooks[i].k, hooks[i].v
        tensors[f"layers.{i}.keys"] = k[0].to(torch.float16).contiguous().cpu()
        tensors[f"layers.{i}.values"] = v[0].to(torch.float16).contiguous().cpu()
        if hooks:
            tensors[f"layers.{i}.queries"] = hooks[i].q[0].to(torch.float16).contiguous().cpu()
    for h in hooks:
        h.remove()
    n = len(ids)
    tensors["tokens"] = torch.tensor(ids, dtype=torch.int32)
    if hooks:
        tensors["query_positions"] = torch.arange(n, dtype=torch.int32)
    name = os.path.basename(os.path.normpath(a.model))
    src = os.path.basename(a.text or a.token_ids)
    unit_in = "bytes" if byte_level and not a.token_ids else "tokens"
    meta = {
        "format": "kvtrace", "version": "1",
        "model": f"{name} ({type(model).__name__}, {len(layers)} layers, {n_heads} heads, {n_kv} kv heads, "
                 f"head_dim {head_dim})",
        "layers": str(len(layers)), "n_heads": str(n_heads), "n_kv_heads": str(n_kv), "head_dim": str(head_dim),
        "rope_theta": repr(rope_theta_of(cfg)), "post_rope": "true",
        "source": f"{src}, first {n} {unit_in} "
                  f"(tools/capture_kv.py, torch {torch.__version__}, {a.dtype} on {device})",
        ("bits_per_byte" if unit_in == "bytes" else "bits_per_token"): f"{bits:.6f}",
        "model_type": str(getattr(cfg, "model_type", "")),
        "layer_windows": ",".join(str(w) for w in layer_windows(cfg, layers)),
    }
    cap = getattr(cfg, "attn_logit_softcapping", None)
    if cap:
        meta["attn_logit_softcapping"] = repr(float(cap))
    tmp = f"{a.out}.tmp.{os.getpid()}"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, a.out)
    unit = "bits/byte" if unit_in == "bytes" else "bits/token"
    print(f"wrote {a.out}: {len(layers)} layers, {n_heads} heads, {n_kv} kv heads, head_dim {head_dim}, "
          f"{n} tokens; loss {bits:.4f} {unit}")
    return 0


def _has_dtype_kw():
    # transformers 5 renamed torch_dtype to dtype (4.56 accepts both).
    import transformers
    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return (major, minor) >= (4, 56)


if __name__ == "__main__":
    sys.exit(main())
