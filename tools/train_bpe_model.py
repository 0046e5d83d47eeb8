#!/usr/bin/python3
"""sample_data/bpemodel: a small Llama trained here, on CPU, with a byte-level
BPE tokenizer also trained here, so that `kvstudio ppl` can be shown on a real
model whose tokenizer is a tokenizer.json (issue 13).

    nice /usr/bin/python3 tools/train_bpe_model.py OUTDIR [--steps N] [--threads T]
    /usr/bin/python3 tools/train_bpe_model.py --encode OUTDIR FILE...   (one line of ids per FILE)

Needs numpy, torch (Debian's 1.13 is enough) and regex (python3-regex, for
\\p{L}). Everything is seeded; the step count is fixed, not the time, so a
rerun with the same --threads on the same torch gives the same weights.

What it does, in order:
1. Corpus: the Python sources of /usr/lib/python3.11 (Debian's stdlib), the
   sorted list of files that `corpus_files` selects; every 25th file of that
   list and textwrap.py (one of the two sample texts) are held out for
   validation, the rest is training text.
2. Tokenizer: word-frequency BPE, as GPT-2's (openai/gpt-2 src/encoder.py) and
   Hugging Face's BpeTrainer do it: the text is split into chunks by the GPT-2
   regex, each chunk's bytes are mapped to printable characters by the GPT-2
   bytes_to_unicode table, and the most frequent adjacent pair over all chunk
   occurrences is merged, N_MERGES times (ties: the smallest pair in string
   order). Vocabulary: the 256 byte symbols (id = byte value), then one id per
   merge in merge order, then <|endoftext|> as a special added token.
   Written as tokenizer.json in the schema the `tokenizers` library (0.20+)
   writes for Qwen2-style files: pre_tokenizer Sequence[Split(regex,
   Isolated), ByteLevel(use_regex false)], model BPE with merges as pairs,
   decoder ByteLevel. No BOS is added (GPT-2 convention).
3. Model: LlamaForCausalLM layout (config.json, model.safetensors F16, tied
   embeddings), RMSNorm, RoPE in the Hugging Face rotate_half convention, SwiGLU,
   grouped-query attention; trained with AdamW on random windows of the
   training tokens.
4. Reference: the saved F16 weights are read back, upcast to F32, and a
   plain F32 forward gives the losses of the two sample texts, written into
   OUTDIR/README.md and OUTDIR/reference.json, with their token ids.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import regex
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STDLIB = "/usr/lib/python3.11"
SKIP_DIRS = ("test", "tests", "idle_test", "idlelib", "lib2to3", "tkinter", "turtledemo", "ensurepip",
             "pydoc_data", "site-packages", "dist-packages", "__pycache__")
# GPT-2's pre-tokenizer pattern (openai/gpt-2 src/encoder.py, Encoder.__init__;
# the same string Hugging Face's ByteLevel pre-tokenizer uses with use_regex).
GPT2_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
N_MERGES = 1279                     # 256 + 1279 + 1 special = 1536 ids
EOT = "<|endoftext|>"
CFG = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
           num_key_value_heads=1, head_dim=128, rope_theta=10000.0, rms_norm_eps=1e-5)
SAMPLES = [("sample_data/texts/textwrap-1k.py", "first 1024 bytes of CPython 3.11 `Lib/textwrap.py`"),
           ("sample_data/texts/gpl3-2048-3071.txt", "bytes 2048..3071 of the GNU GPL v3 text")]


def corpus_files():
    out = []
    for d, dirs, files in os.walk(STDLIB):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not x.startswith("config-"))
        out += [os.path.join(d, f) for f in files if f.endswith(".py")]
    return sorted(os.path.relpath(p, STDLIB) for p in out)


def bytes_to_unicode():
    """GPT-2's table (openai/gpt-2 src/encoder.py, bytes_to_unicode): printable
    bytes map to themselves, the rest to U+0100 upwards in byte order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2U = bytes_to_unicode()
U2B = {c: b for b, c in B2U.items()}
PAT = regex.compile(GPT2_PAT)


def chunks(text):
    """Pre-tokenized chunks of text, each as its byte-level string."""
    return ["".join(B2U[b] for b in m.encode("utf-8")) for m in PAT.findall(text)]


def train_bpe(word_freq, n_merges):
    """Merges [(a, b)] by word-frequency BPE with incremental pair counts."""
    words = [list(w) for w in word_freq]
    freqs = list(word_freq.values())
    pairs, where = {}, {}
    for i, (w, f) in enumerate(zip(words, freqs)):
        for p in zip(w, w[1:]):
            pairs[p] = pairs.get(p, 0) + f
            where.setdefault(p, set()).add(i)
    merges = []
    for _ in range(n_merges):
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < 2:
            break
        merges.append(best)
        a, b = best
        ab = a + b
        for i in sorted(where.pop(best, ())):
            w, f = words[i], freqs[i]
            for p in zip(w, w[1:]):
                pairs[p] -= f
                if pairs[p] == 0:
                    del pairs[p]
            nw, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    nw.append(ab)
                    j += 2
                else:
                    nw.append(w[j])
                    j += 1
            words[i] = nw
            for p in zip(nw, nw[1:]):
                pairs[p] = pairs.get(p, 0) + f
                where.setdefault(p, set()).add(i)
        pairs.pop(best, None)
    return merges


class Encoder:
    """Standard BPE encoding (GPT-2's Encoder.bpe): within a chunk, merge the
    adjacent pair of lowest merge rank until none is in the table."""

    def __init__(self, merges):
        self.rank = {p: r for r, p in enumerate(merges)}
        self.vocab = {B2U[b]: b for b in range(256)}
        for r, (a, b) in enumerate(merges):
            self.vocab[a + b] = 256 + r
        self.eot = len(self.vocab)
        self.cache = {}

    def bpe(self, chunk):
        if chunk in self.cache:
            return self.cache[chunk]
        w = list(chunk)
        while len(w) > 1:
            r, i = min((self.rank.get((w[k], w[k + 1]), 1 << 30), k) for k in range(len(w) - 1))
            if r == 1 << 30:
                break
            w[i:i + 2] = [w[i] + w[i + 1]]
        ids = [self.vocab[s] for s in w]
        self.cache[chunk] = ids
        return ids

    def encode(self, text):
        """Ids of text; <|endoftext|> in it is the special token, as Hugging Face
        matches added tokens before the pre-tokenizer."""
        out = []
        for k, part in enumerate(text.split(EOT)):
            if k:
                out.append(self.eot)
            for c in chunks(part):
                out += self.bpe(c)
        return out

    def piece_bytes(self, i):
        if i == self.eot:
            return EOT.encode()
        if not hasattr(self, "inv"):
            self.inv = {v: k for k, v in self.vocab.items()}
        return bytes(U2B[c] for c in self.inv[i])


def tokenizer_json(enc, merges):
    added = {"id": enc.eot, "content": EOT, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": GPT2_PAT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": enc.vocab, "merges": [[a, b] for a, b in merges]},
    }


def tokenizer_config(enc, ctx):
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {str(enc.eot): {"content": EOT, "lstrip": False, "normalized": False,
                                                "rstrip": False, "single_word": False, "special": True}},
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOT,
        "errors": "replace",
        "model_max_length": ctx,
        "pad_token": None,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }


# ---- model -----------------------------------------------------------------

def init_params(vocab, g):
    H, I, D = CFG["hidden_size"], CFG["intermediate_size"], CFG["head_dim"]
    nh, nkv = CFG["num_attention_heads"], CFG["num_key_value_heads"]

    def w(o, i, std=0.02):
        return (torch.randn(o, i, generator=g) * std).requires_grad_()

    out_std = 0.02 / math.sqrt(2 * CFG["num_hidden_layers"])
    p = {"model.embed_tokens.weight": w(vocab, H), "model.norm.weight": torch.ones(H, requires_grad=True)}
    for l in range(CFG["num_hidden_layers"]):
        q = f"model.layers.{l}."
        p[q + "input_layernorm.weight"] = torch.ones(H, requires_grad=True)
        p[q + "post_attention_layernorm.weight"] = torch.ones(H, requires_grad=True)
        p[q + "self_attn.q_proj.weight"] = w(nh * D, H)
        p[q + "self_attn.k_proj.weight"] = w(nkv * D, H)
        p[q + "self_attn.v_proj.weight"] = w(nkv * D, H)
        p[q + "self_attn.o_proj.weight"] = w(H, nh * D, out_std)
        p[q + "mlp.gate_proj.weight"] = w(I, H)
        p[q + "mlp.up_proj.weight"] = w(I, H)
        p[q + "mlp.down_proj.weight"] = w(H, I, out_std)
    return p


def rms_norm(x, w):
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + CFG["rms_norm_eps"])).to(x.dtype) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope(T, dtype):
    D = CFG["head_dim"]
    inv = 1.0 / (CFG["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    f = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    e = torch.cat((f, f), dim=-1)
    return e.cos().to(dtype), e.sin().to(dtype)


def forward(p, ids):
    """Logits (B, T, vocab) of ids (B, T): LlamaForCausalLM's eager forward."""
    B, T = ids.shape
    D, nh, nkv = CFG["head_dim"], CFG["num_attention_heads"], CFG["num_key_value_heads"]
    x = p["model.embed_tokens.weight"][ids]
    cos, sin = rope(T, x.dtype)
    mask = torch.full((T, T), float("-inf"), dtype=x.dtype).triu(1)
    for l in range(CFG["num_hidden_layers"]):
        q_ = f"model.layers.{l}."
        h = rms_norm(x, p[q_ + "input_layernorm.weight"])
        q = (h @ p[q_ + "self_attn.q_proj.weight"].T).view(B, T, nh, D).transpose(1, 2)
        k = (h @ p[q_ + "self_attn.k_proj.weight"].T).view(B, T, nkv, D).transpose(1, 2)
        v = (h @ p[q_ + "self_attn.v_proj.weight"].T).view(B, T, nkv, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D) + mask, dim=-1) @ v
        x = x + a.transpose(1, 2).reshape(B, T, nh * D) @ p[q_ + "self_attn.o_proj.weight"].T
        h = rms_norm(x, p[q_ + "post_attention_layernorm.weight"])
        g = F.silu(h @ p[q_ + "mlp.gate_proj.weight"].T) * (h @ p[q_ + "mlp.up_proj.weight"].T)
        x = x + g @ p[q_ + "mlp.down_proj.weight"].T
    x = rms_norm(x, p["model.norm.weight"])
    return x @ p["model.embed_tokens.weight"].T   # tied lm_head


def save_safetensors(path, tensors):
    """F16 safetensors (format: huggingface/safetensors README, 8-byte LE header length + JSON + data)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name].detach().to(torch.float16).contiguous().numpy()
        b = a.tobytes()
        header[name] = {"dtype": "F16", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, m in header.items():
        if name == "__metadata__":
            continue
        s, e = m["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[s:e], dtype=np.float16).reshape(m["shape"]).copy())
    return out


def write_text(path, s):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(s)
    os.replace(tmp, path)


def write_json(path, o, indent=2):
    write_text(path, json.dumps(o, indent=indent, ensure_ascii=False) + "\n")


def nll_bits(p, ids):
    """Per-prediction -log2 p(ids[i+1] | ids[0..i]), i = 0..n-2, F32 forward."""
    with torch.no_grad():
        logits = forward(p, torch.tensor([ids]))[0, :-1].double()
        lp = torch.log_softmax(logits, dim=-1)
        return (-lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])] / math.log(2)).numpy()


def write_readme(outdir):
    """OUTDIR/README.md from OUTDIR/reference.json and config.json (--readme)."""
    r = json.load(open(os.path.join(outdir, "reference.json")))
    c = json.load(open(os.path.join(outdir, "config.json")))
    size = sum(os.path.getsize(os.path.join(outdir, f)) for f in ("model.safetensors", "tokenizer.json"))
    rows = "\n".join(f"| {s['what']} (`{s['text']}`) | {s['bytes']} | {s['tokens']} | {s['covered_bytes']} | "
                      f"{s['bits_per_token']:.4f} | {s['bits_per_byte']:.4f} |" for s in r["samples"])
    txt = f"""# bpemodel: a small Llama with a byte-level BPE tokenizer

Made on a shared 2-core CPU by `nice /usr/bin/python3 tools/train_bpe_model.py sample_data/bpemodel`
(torch {r.get('torch', '1.13')}, numpy, python3-regex; {r['threads']} torch threads; seeded, fixed step count),
so that kvstudio's `ppl`, `generate` and `capture` can be shown on a real model whose tokenizer is a
Hugging Face `tokenizer.json`. It is tiny and trained for minutes: the point is a real, checkable
model with a BPE vocabulary, not a good one.

- Files: `config.json` (model_type llama), `model.safetensors` (F16, names such as
  `model.layers.0.self_attn.k_proj.weight`, no `lm_head.weight`: tied embeddings),
  `tokenizer.json`, `tokenizer_config.json`, `reference.json` (every figure below, the
  validation file list, the sample texts' token ids). {size / 1e6:.1f} MB.
- Architecture: {c['num_hidden_layers']} layers, hidden {c['hidden_size']}, {c['num_attention_heads']} query heads
  and {c['num_key_value_heads']} kv head of head_dim {c['head_dim']} (grouped-query attention), SwiGLU MLP of
  {c['intermediate_size']}, RMSNorm eps {c['rms_norm_eps']}, RoPE theta {c['rope_theta']:.0f} in the Hugging Face
  rotate_half convention, tied input/output embeddings, vocab {c['vocab_size']}; {r['n_params'] / 1e6:.2f}M parameters.
- Tokenizer: byte-level BPE trained by the script on the training files: the GPT-2 regex
  split, GPT-2's byte-to-unicode map, word-frequency merges (most frequent adjacent pair over
  all chunk occurrences, ties to the smallest pair), 256 byte tokens (id = byte value) +
  {c['vocab_size'] - 257} merges + `<|endoftext|>` (id {c['vocab_size'] - 1}, special). No BOS is added (GPT-2
  convention). {r['train_bytes'] / r['train_tokens']:.2f} bytes per token on the training text.
- Data: the Python sources of Debian's /usr/lib/python3.11 (all `*.py` under it, sorted, less
  test/idlelib/lib2to3/tkinter/turtledemo/ensurepip/pydoc_data/site- and dist-packages):
  {r['train_files']} training files, {r['train_bytes']} bytes, {r['train_tokens']} tokens with `<|endoftext|>`
  after each file; {r['val_files']} held out (every 25th file of the sorted list, and `textwrap.py`).
- Training: {r['steps']} AdamW steps (lr {r['lr']}, betas 0.9/0.95, weight decay 0.1 on matrices, warmup then
  cosine to a tenth, gradient clip 1.0) of {r['batch']} random windows of {r['seq']} tokens, F32, {r['train_seconds']} s.
  Validation (first {r['seq'] + 1} tokens of each held-out file, {r['val_tokens']} predictions): {r['val_bits_per_token']:.4f}
  bits/token, {r['val_bits_per_byte']:.4f} bits/byte.

Reference losses: the script's own F32 torch forward over the saved F16 weights (upcast), no KV
quantization. bits/token = mean over i = 0..n-2 of -log2 p(tok[i+1] | tok[0..i]); bits/byte = their
sum over the bytes those predictions cover (the text's bytes less the first token's), as
`kvstudio ppl` reports them.

| text | bytes | tokens | bytes covered | bits/token | bits/byte |
| --- | --- | --- | --- | --- | --- |
{rows}

`tests/e2e/bpemodel.sh` checks that `kvstudio tokenize` gives these texts' ids exactly and that
`kvstudio ppl` reproduces the table to 0.002.
"""
    write_text(os.path.join(outdir, "README.md"), txt)


def encode_files(tok_dir, files):
    """--encode: ids of each file under OUTDIR/tokenizer.json's merges, by this
    script's encoder (the expected ids tests/e2e/bpemodel.sh compares with)."""
    tj = json.load(open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8"))
    if tj["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] != GPT2_PAT:
        sys.exit(f"{tok_dir}/tokenizer.json: pre_tokenizer pattern is not GPT-2's")
    enc = Encoder([tuple(m) for m in tj["model"]["merges"]])
    if enc.vocab != tj["model"]["vocab"]:
        sys.exit(f"{tok_dir}/tokenizer.json: model.vocab is not the merges' vocabulary")
    for f in files:
        ids = enc.encode(open(f, "rb").read().decode("utf-8"))
        print(" ".join(map(str, ids)))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--readme":
        return write_readme(sys.argv[2])
    if len(sys.argv) > 2 and sys.argv[1] == "--encode":
        return encode_files(sys.argv[2], sys.argv[3:])
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=448)
    ap.add_argument("--lr", type=float, default=6e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-steps", type=int, default=0, help="time this many steps and stop")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1234)
    rng = np.random.default_rng(1234)
    os.makedirs(args.outdir, exist_ok=True)
    t0 = time.time()

    files = corpus_files()
    val = [f for i, f in enumerate(files) if i % 25 == 0 or f == "textwrap.py"]
    train = [f for f in files if f not in val]
    read = lambda f: open(os.path.join(STDLIB, f), encoding="utf-8", errors="replace").read()
    train_text = [read(f) for f in train]
    val_text = [read(f) for f in val]
    ntrain_bytes = sum(len(t.encode()) for t in train_text)
    print(f"corpus: {len(train)} training files ({ntrain_bytes} bytes), {len(val)} validation files", flush=True)

    freq = {}
    for t in train_text:
        for c in chunks(t):
            freq[c] = freq.get(c, 0) + 1
    merges = train_bpe(freq, N_MERGES)
    enc = Encoder(merges)
    vocab = enc.eot + 1
    print(f"bpe: {len(merges)} merges, vocab {vocab}, {time.time() - t0:.0f} s", flush=True)
    # One document per file, <|endoftext|> between them.
    tr = []
    for t in train_text:
        tr += enc.encode(t) + [enc.eot]
    tr = torch.tensor(tr)
    va = [enc.encode(t) for t in val_text]
    print(f"train tokens {len(tr)} ({ntrain_bytes / len(tr):.3f} bytes/token), {time.time() - t0:.0f} s", flush=True)

    p = init_params(vocab, g)
    decay = [v for k, v in p.items() if v.dim() == 2]
    flat = [v for k, v in p.items() if v.dim() == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": flat, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    warm = max(1, args.steps // 20)
    steps = args.time_steps or args.steps
    t1 = time.time()
    for step in range(steps):
        lr = args.lr * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for gr in opt.param_groups:
            gr["lr"] = lr
        starts = torch.from_numpy(rng.integers(0, len(tr) - args.seq - 1, size=args.batch))
        x = torch.stack([tr[s:s + args.seq + 1] for s in starts])
        logits = forward(p, x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(p.values()), 1.0)
        opt.step()
        if step % 8 == 0 or step == steps - 1:
            print(f"step {step} loss {loss.item() / math.log(2):.3f} bits/token lr {lr:.2e} "
                  f"{(time.time() - t1) / (step + 1):.2f} s/step", flush=True)
    if args.time_steps:
        return
    train_s = time.time() - t1

    st_path = os.path.join(args.outdir, "model.safetensors")
    save_safetensors(st_path, p)
    q = {k: v.float() for k, v in load_safetensors(st_path).items()}   # what kvstudio reads

    # Validation: the first args.seq + 1 tokens of each held-out file (its first
    # token is context only; the CPU is too slow for whole files), over the saved
    # F16 weights in F32 math.
    vbits, vtok, vbytes = 0.0, 0, 0
    for ids in va:
        for s in range(0, min(len(ids) - 1, 1), args.seq):
            w = ids[s:s + args.seq + 1]
            if len(w) < 2:
                continue
            vbits += float(nll_bits(q, w).sum())
            vtok += len(w) - 1
            vbytes += sum(len(enc.piece_bytes(i)) for i in w[1:])
    val_bpt, val_bpb = vbits / vtok, vbits / vbytes
    print(f"validation: {val_bpt:.4f} bits/token, {val_bpb:.4f} bits/byte over {vtok} tokens", flush=True)

    refs = []
    for path, what in SAMPLES:
        raw = open(os.path.join(ROOT, path), "rb").read()
        ids = enc.encode(raw.decode("utf-8"))
        bits = nll_bits(q, ids)
        # bits/byte over the bytes the predictions cover: all but the first token's.
        covered = len(raw) - len(enc.piece_bytes(ids[0]))
        refs.append(dict(text=path, what=what, bytes=len(raw), tokens=len(ids), covered_bytes=covered,
                         bits_per_token=float(bits.mean()), bits_per_byte=float(bits.sum() / covered),
                         ids=ids))
        print(f"{path}: {len(ids)} tokens, {bits.mean():.4f} bits/token, {bits.sum() / covered:.4f} bits/byte",
              flush=True)

    tj = tokenizer_json(enc, merges)
    write_json(os.path.join(args.outdir, "tokenizer.json"), tj)
    write_json(os.path.join(args.outdir, "tokenizer_config.json"), tokenizer_config(enc, args.seq))
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab}
    cfg.update(CFG)
    cfg.update(max_position_embeddings=512, hidden_act="silu", tie_word_embeddings=True,
               attention_bias=False, mlp_bias=False, eos_token_id=enc.eot,
               torch_dtype="float16")
    write_json(os.path.join(args.outdir, "config.json"), cfg)
    n_params = sum(v.numel() for v in p.values())
    summary = dict(torch=torch.__version__, train_files=len(train), val_files=len(val), train_bytes=ntrain_bytes, train_tokens=len(tr),
                   steps=args.steps, batch=args.batch, seq=args.seq, lr=args.lr, threads=args.threads,
                   train_seconds=round(train_s), n_params=n_params, val_bits_per_token=val_bpt,
                   val_bits_per_byte=val_bpb, val_tokens=vtok, val_bytes=vbytes,
                   val_file_list=val, samples=refs)
    write_json(os.path.join(args.outdir, "reference.json"), summary)
    write_readme(args.outdir)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("samples", "val_file_list")}), flush=True)


if __name__ == "__main__":
    main()
