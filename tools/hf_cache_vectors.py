#!/usr/bin/python3
"""Test vectors for transformers:quanto_g64 and transformers:hqq_g64
(engine/methods/hf_quanto.c, engine/methods/hf_hqq.c): an independent
transcription, in numpy float16/float32 scalars, of what transformers'
QuantizedCache stores for one key or value vector of head_dim 128 in an fp16
cache on a CUDA device. torch, optimum-quanto and hqq are not on this machine,
so the arithmetic below follows their source line by line:

transformers src/transformers/cache_utils.py (huggingface/transformers
004999d972e478164dd7e8e508350937c803531e): QuantoQuantizedLayer._quantize =
MaxOptimizer(tensor, qint{2,4}, axis, q_group_size) then quantize_weight;
HQQQuantizedLayer._quantize = hqq Quantizer.quantize(tensor, axis, nbits,
group_size, compute_dtype=cache dtype) and meta cast to the cache dtype.

optimum-quanto (huggingface/optimum-quanto e33f8202e6c755256b7448789a5ed765c45d5105):
  tensor/grouped.py group(): axis 0 -> base.reshape(-1, group_size), i.e.
    64 consecutive values of the [B, H, T, head_dim] cache = along head_dim;
  tensor/optimizers/max_optimizer.py: scale = (rmax - rmin) / (qmax - qmin),
    shift = -rmin, in the cache dtype (fp16); qmax - qmin = 2^bits - 1;
  library/quantize.py quantize_affine: round((base + shift) / scale),
    clamp(0, 2^bits - 1), uint8;
  tensor/qbits.py QBitsDequantizer: scale * data, then -= shift (fp16);
  tensor/packed.py pack_weights: (G, 64) codes -> (ceil(G / (8/bits)), 64)
    uint8, byte [r, c] |= code[i*R + r, c] << (bits*i).

hqq (mobiusml/hqq e0b1d00e095653359da9de1d7dbb35a994aa6b96):
  core/quantize.py Quantizer.quantize: W = tensor.float(); axis 1 ->
    W.reshape(-1, group_size); max_v = 2^nbits - 1; denom = max - min;
    scale = max_v / denom (torch: denom.reciprocal() * max_v); scale 1 where
    |denom| <= 1e-4; clamp(max=2e4); zero = -min * scale; optimize=True ->
    optimize_weights_proximal; then scale = 1 / scale; packing
    bit_to_packing / BitPack;
  core/optimize.py optimize_weights_proximal_legacy (lines 201-256): on CUDA
    in float16: lp_norm 0.7, beta 10, 20 iterations (kappa unused), each
    step W_q = round(W_f*scale + zero).clamp, W_r = (W_q - zero) / scale,
    W_e = shrink_lp_op(W_f - W_r), zero = mean(W_q - (W_f - W_e)*scale);
    the whole tensor's mean |W_f - W_r| must fall or the loop stops (the
    zero of that step is kept); final W_q = round(W*scale + zero) in fp32;
  core/bitpack.py: 8bit_u8 plain, 4bit_u8 (W[:n/2] << 4) | W[n/2:], 2bit_u8
    and 1bit_u8 likewise (first quarter/eighth in the top bits), 3bit_32
    ten rows a int32, row k at shift 27 - 3k.

torch CUDA semantics used for fp16 tensors: every elementwise op computes in
float32 and rounds to fp16 once; a division by a Python scalar is a multiply
by its float reciprocal (aten/src/ATen/native/cuda/BinaryDivTrueKernel.cu);
pow's scalar exponent is first cast to the tensor dtype (PowKernel.cu:
exp_scalar.to<scalar_t>()); mean accumulates in float32; torch.round is
half to even. Sums here run sequentially (CUDA's tree order can differ in
the last float bit; that moves an fp16 result only on a rounding tie).

Each vector is quantized as a tensor of its own ([1, 1, 1, 128]): HQQ's
early stop looks at the mean error of the whole tensor it is given.

Output (tests/data/formats/hf_cache.txt), one vector a line:
  `backend bits | inputs (float32 hex) | record (hex) | decoded (fp16 hex)`
with the record as kvstudio lays it out: codes, then fp16 scales, then fp16
shifts (quanto) / zeros (hqq), one per group of 64. Codes: quanto LSB first
in one little-endian bit stream; hqq in its BitPack bit order within a byte
(first code in the top bits) or, at 3 bits, 10 codes a little-endian uint32
at shifts 27, 24, ..., 0. Then lines
  `tensor backend bits T | inputs | packed (hex)`
give the library's own packed code tensor for T vectors quantized one by one
(the test rebuilds it from the records).

    /usr/bin/python3 tools/hf_cache_vectors.py > tests/data/formats/hf_cache.txt
"""
import random
import struct

import numpy as np

F16, F32 = np.float16, np.float32
D, G = 128, 64


def h(x):  # one fp16 rounding of a float32 result
    return F16(F32(x))


def rne(x):  # torch.round on a float: half to even
    return F32(np.rint(F32(x)))


# ---- optimum-quanto ----
def quanto_group(x, bits):
    qmax = (1 << bits) - 1
    rmin, rmax = min(x), max(x)
    inv = F32(1.0) / F32(qmax)          # division by the Python int qmax - qmin
    scale = h(F32(h(F32(rmax) - F32(rmin))) * inv)
    shift = F16(-rmin)
    codes = []
    for v in x:
        with np.errstate(invalid="ignore", divide="ignore"):
            t = h(F32(h(F32(v) + F32(shift))) / F32(scale))
        q = rne(t)
        if np.isnan(q):
            q = 0                        # 0/0 (a constant group): cast of NaN to uint8 gives 0
        codes.append(int(min(max(q, 0), qmax)))
    dec = [h(F32(h(F32(scale) * F32(q))) - F32(shift)) for q in codes]
    return codes, scale, shift, dec


# ---- hqq ----
SHRINK_P = F32(F16(0.7 - 1))            # pow exponent cast to fp16, then to float


def hqq_tensor(w, nbits):
    """w: fp16 values of one tensor, grouped by 64 (axis 1). Returns codes per
    group, fp16 scale (1/scale) and zero per group, decoded values."""
    max_v = (1 << nbits) - 1
    ng = len(w) // G
    groups = [[F32(v) for v in w[g * G:(g + 1) * G]] for g in range(ng)]
    s32, z32 = [], []
    for W in groups:
        mn, mx = min(W), max(W)
        denom = F32(mx - mn)
        with np.errstate(divide="ignore"):
            sc = F32(F32(F32(1.0) / denom) * F32(max_v))
        if abs(denom) <= F32(1e-4):
            sc = F32(1.0)
        sc = min(sc, F32(2e4))
        s32.append(sc)
        z32.append(F32(-mn * sc))
    # optimize_weights_proximal_legacy on CUDA: float16 throughout
    wf = [[F16(v) for v in W] for W in groups]
    s = [F16(v) for v in s32]
    z = [F16(v) for v in z32]
    best = F32(np.inf)
    n = ng * G
    for _ in range(20):
        err_sum = F32(0)
        new_z = []
        for g in range(ng):
            acc = F32(0)
            for v in wf[g]:
                wq = F16(min(max(rne(h(F32(h(F32(v) * F32(s[g]))) + F32(z[g]))), 0), max_v))
                wr = h(F32(h(F32(wq) - F32(z[g]))) / F32(s[g]))
                x = h(F32(v) - F32(wr))
                a = F16(abs(x))
                with np.errstate(divide="ignore"):
                    p = h(np.power(F32(a), SHRINK_P))
                t = h(F32(0.1) * F32(p))
                u = h(F32(a) - F32(t))
                u = max(u, F16(0))
                we = h(F32(u) * F32(np.sign(x)))
                e = h(F32(h(F32(v) - F32(we))) * F32(s[g]))
                acc = F32(acc + F32(h(F32(wq) - F32(e))))
                err_sum = F32(err_sum + F32(a))
            new_z.append(h(acc * F32(1.0 / G)))
        err = F32(h(err_sum * F32(1.0 / n)))
        z = new_z
        if err < best:
            best = err
        else:
            break
    codes, sm, dec = [], [], []
    for g in range(ng):
        cg = [int(min(max(rne(F32(F32(W * F32(s[g])) + F32(z[g]))), 0), max_v)) for W in groups[g]]
        inv = h(F32(1.0) / F32(s[g]))
        codes.append(cg)
        sm.append(inv)
        dec.extend(h(F32(h(F32(q) - F32(z[g]))) * F32(inv)) for q in cg)
    return codes, sm, z, dec


def hqq_code_bytes(codes, nbits):
    flat = [q for cg in codes for q in cg]
    if nbits == 3:
        out = b""
        for w0 in range(0, len(flat), 10):
            word = 0
            for j, q in enumerate(flat[w0:w0 + 10]):
                word |= q << (27 - 3 * j)
            out += struct.pack("<I", word)
        return out
    per = 8 // nbits
    out = bytearray(len(flat) * nbits // 8)
    for i, q in enumerate(flat):
        out[i // per] |= q << (8 - nbits * (i % per + 1))
    return bytes(out)


def quanto_record(x, bits):
    stream, sc, sh, dec = 0, b"", b"", []
    for g in range(D // G):
        codes, s, t, d = quanto_group(x[g * G:(g + 1) * G], bits)
        for j, q in enumerate(codes):
            stream |= q << ((g * G + j) * bits)
        sc += s.tobytes()
        sh += t.tobytes()
        dec += d
    return stream.to_bytes(D * bits // 8, "little") + sc + sh, dec, None


def hqq_record(x, bits):
    codes, sm, z, dec = hqq_tensor(x, bits)
    return hqq_code_bytes(codes, bits) + b"".join(v.tobytes() for v in sm) + b"".join(v.tobytes() for v in z), dec, codes


def quanto_codes(x, bits):
    return [quanto_group(x[g * G:(g + 1) * G], bits)[0] for g in range(D // G)]


def quanto_pack_tensor(rows, bits):  # tensor/packed.py pack_weights over (Gt, 64)
    per = 8 // bits
    R = (len(rows) + per - 1) // per
    out = [[0] * G for _ in range(R)]
    for i in range(per):
        for r in range(R):
            if i * R + r < len(rows):
                for c in range(G):
                    out[r][c] |= rows[i * R + r][c] << (bits * i)
    return bytes(b for row in out for b in row)


def hqq_pack_tensor(rows, bits):  # core/bitpack.py over (Gt, 64)
    if bits == 8:
        return bytes(b for row in rows for b in row)
    if bits == 3:
        rows = rows + [[0] * G] * (-len(rows) % 10)
        step = len(rows) // 10
        return b"".join(struct.pack("<i", sum(rows[k * step + r][c] << (27 - 3 * k) for k in range(10)))
                        for r in range(step) for c in range(G))
    per = 8 // bits
    step = len(rows) // per
    return bytes(sum(rows[k * step + r][c] << (8 - bits * (k + 1)) for k in range(per))
                 for r in range(step) for c in range(G))


def hexf(xs):
    return " ".join(struct.pack(">f", float(v)).hex() for v in xs)


def main():
    rng = random.Random(1402)
    cases = []
    for backend, widths in (("quanto", (2, 4)), ("hqq", (1, 2, 3, 4, 8))):
        for bits in widths:
            for kind in ("gauss", "outlier", "positive", "wide", "tiny"):
                x = [rng.gauss(0, 1) for _ in range(D)]
                if kind == "outlier":
                    x[rng.randrange(D)] = 40.0
                elif kind == "positive":
                    x = [abs(v) + 0.5 for v in x]
                elif kind == "wide":
                    x = [v * 30 for v in x]
                elif kind == "tiny":
                    x = [v * 1e-5 for v in x]   # |max - min| under hqq's 1e-4 floor
                cases.append((backend, bits, x))
            cases.append((backend, bits, [0.75] * D))
            cases.append((backend, bits, [0.0] * D))
            cases.append((backend, bits, [((i % 5) - 2) * 0.5 for i in range(D)]))
    for backend, bits, x in cases:
        xs = [F32(v) for v in x]
        xh = [F16(v) for v in xs]          # the cache is fp16
        rec, dec, _ = (quanto_record if backend == "quanto" else hqq_record)(xh, bits)
        print(f"{backend} {bits} | {hexf(xs)} | {rec.hex()} | {b''.join(F16(v).tobytes() for v in dec).hex()}")
    # whole tensors of T vectors, each quantized alone, in the library's packing
    for backend, bits, T in (("quanto", 4, 5), ("quanto", 2, 3), ("hqq", 4, 3), ("hqq", 2, 4), ("hqq", 1, 4),
                             ("hqq", 3, 5), ("hqq", 8, 2)):
        xs = [F32(rng.gauss(0, 1)) for _ in range(T * D)]
        rows = []
        for t in range(T):
            xh = [F16(v) for v in xs[t * D:(t + 1) * D]]
            rows += quanto_codes(xh, bits) if backend == "quanto" else hqq_tensor(xh, bits)[0]
        packed = quanto_pack_tensor(rows, bits) if backend == "quanto" else hqq_pack_tensor(rows, bits)
        print(f"tensor {backend} {bits} {T} | {hexf(xs)} | {packed.hex()}")


if __name__ == "__main__":
    main()
