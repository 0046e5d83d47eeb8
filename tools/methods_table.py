#!/usr/bin/env python3
# tools/methods_table.py OUT_DIR — writes docs/methods_table.md from the JSON that
# tools/methods_table.sh left in OUT_DIR (run from the repository root).
import io, contextlib, runpy, sys, datetime, subprocess
head = r'''# Methods table: every method on the sample traces

Measured on 2026-11-22 (working tree on top of ee26ba1; regenerate when a method changes) with
`kvstudio quantize` (engine/quantreport.h has the definitions) on
`sample_data/traces/code-1k.safetensors` and `prose-1k.safetensors` (6 layers x 2 kv heads x
1024 tokens, head_dim 128, post-RoPE keys of the 19M reference model). Each row is one command,
for example

    kvstudio quantize sample_data/traces/code-1k.safetensors --method q4_0 --bits 4 --value-bits 16 --json
    kvstudio quantize sample_data/traces/code-1k.safetensors --method spectral --bits 3 --value-bits 16 \
        --artifacts DIR      # DIR from: kvstudio precompute --method spectral --trace prose-1k... --output DIR --target-bits 3

- **bits held** = bytes actually held x 8 / coordinates (codes + norms + scales + side data,
  from each method's `bytes_per_vector`), not the nominal `--bits`.
- **rel MSE** = mean over vectors of |x - x_hat|^2 / |x|^2; **cos** = mean cosine(x, x_hat).
- **q.k err** = sqrt(sum (s_hat - s)^2 / sum s^2) over (query, key) pairs: 64 evenly spaced query
  rows per query head (GQA-mapped to its kv head), each against every key at or before its
  position; s_hat comes from the method's `score()` straight from the codes.
- Key tables use fp16 values (`--value-bits 16`); the value table uses fp16 keys.
- Calibrated methods use artifacts computed on the **other** trace (`precompute --target-bits B`),
  so their figures are out of sample. In-sample figures are not shown: commvq, for one, reaches a
  relative MSE of about 0 on its own calibration trace at 2 bits (its codebooks memorize 1024
  keys), which says nothing about unseen keys.
- ggml figures are bit-exact with llama.cpp's reference quantizers; our q4_0 (0.0109) and
  iq4_nl (0.0078) key MSE reproduce the published peer figures. Our score() does not round the
  query to q8_0 as ggml's `vec_dot` does, so the q.k error of the ggml rows is the key
  quantization's alone.

'''
notes = """### Notes

- **vecinfer** picks its codebook size from the rate when `--num-centroids` is not given: the
  largest codebook (<= 256) whose subspace count divides head_dim (2 bits: 32 subspaces x 256
  centroids; 3 bits: 64 x 64; 4 bits: 64 x 256).
- **commvq** uses 4 codewords per additive codebook by default (R = bits x d / 2 codebooks); a
  256-entry codebook memorizes a 1024-token calibration trace and generalizes badly.
- **ratequant** allocates bits per layer to minimize the sensitivity-weighted attention error, not
  the key MSE shown here: its mean key MSE is higher than uniform turboquant_mse at the same mean
  bits (1-bit layers dominate the mean), while its attention-output error is lower (on code-1k
  0.0708 vs 0.0816 at 2 bits and 0.0168 vs 0.0219 at 3 bits; `tests/test_calib.c`).
- **turboquant_prod** has a larger MSE than turboquant_mse by design (one bit goes to the
  unbiased QJL residual); compare it on q.k bias, not MSE.
- **Side tables** are not in "bits held" (which counts per-vector records): spectral keeps a
  d x d eigenbasis + per-dimension codebooks per (layer, kv head), rabitq its IVF centroids,
  commvq and vecinfer their codebooks (spectral at d = 128: a 64 KB f32 eigenbasis per stream,
  about 4 bits/coord at 1024 tokens, 0.125 at 32K). They are fixed per stream, amortize with
  context length, and are not yet included in bits held nor in the cache's memory figure.
- q4_0_hadamard and turboquant_mse with outlier channels are calibration-free ways to beat
  iq4_nl at 4.5 bits or less (0.0071 at 4.5, 0.0074 at 4.375).
"""
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    runpy.run_path('tools/methods_table_fmt.py', run_name='__main__')
rev = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()
head = head.replace('working tree on top of ee26ba1', 'commit ' + rev)
head = head.replace('2026-11-22', datetime.datetime.utcnow().strftime('%Y-%m-%d'))
open('docs/methods_table.md', 'w').write(head + buf.getvalue() + '\n' + notes)
