#!/usr/bin/env python3
"""Test vectors for vLLM's TurboQuant KV presets and fp8 with calculated
k/v scales, transcribed from vLLM's source (pure Python, no numpy/torch):
writes tests/data/formats/vllm_tq.txt (tests/test_vllm_tq.c reads it).

Why a transcription: vLLM's Triton kernels were copied to build/vllm_ref/
to run on the GPU machine, but the device call refused the checkout (the
working tree that travels is over its 64 MiB limit), so the vectors come
from this script. Every fp32 step of the kernels is one IEEE operation
rounded with f32(); the exceptions are the ones engine/methods/
vllm_turboquant.c documents (||k|| and the Hadamard sums in double,
divisions IEEE where Triton may use div.full).

Sources (vllm-project/vllm):
  config.py  = vllm/model_executor/layers/quantization/turboquant/config.py @ 1471680b
               TQ_PRESETS; key_packed_size; value_packed_size; slot_size_aligned
  centroids  = .../turboquant/centroids.py @ 06d0369d: _gaussian_pdf, _trapz,
               solve_lloyd_max
  attn.py    = vllm/v1/attention/backends/turboquant_attn.py @ 0135d081:
               _build_hadamard_cached (Sylvester, / math.sqrt(d)),
               _ensure_on_device (midpoints = (c_sorted[:-1] + c_sorted[1:]) / 2)
  store.py   = vllm/v1/attention/ops/triton_turboquant_store.py @ 0135d081:
               triton_turboquant_store (norms, x_hat = k / (norms + 1e-8),
               y = x_hat @ PiT); _tq_fused_store_mse (binary search, packing,
               fp16 norm); _tq_fused_store_fp8 (k.to(float8e4nv));
               _store_quantized_value (scale, zero, codes, packing)
  decode.py  = vllm/v1/attention/ops/triton_turboquant_decode.py @ 055e47c2:
               _tq_full_dequant_kv (norm correction, v = q * scale + zero)
  attention  = vllm/model_executor/layers/attention/attention.py @ 0014ca6b:
               set_default_quant_scales (k_range = K_SCALE_CONSTANT = 200,
               v_range = V_SCALE_CONSTANT = 100, vllm/envs.py) and
               Attention.calc_kv_scales (abs(key).max() / k_range)
  fp8 write  = csrc/quantization/fp8/nvidia/quant_utils.cuh (read for
               engine/methods/vllm_fp8.c): __nv_cvt_float_to_fp8(x / scale,
               __NV_SATFINITE, __NV_E4M3)
"""
import math
import os
import random
import struct
from fractions import Fraction


def f32(x):
    if x != x:
        return x
    if abs(x) > 3.4028235677973366e38:
        return math.copysign(math.inf, x)
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f16(x):  # fp32 -> fp16 round to nearest even (Triton .to(tl.float16))
    try:
        return struct.unpack("<e", struct.pack("<e", x))[0]
    except (OverflowError, struct.error):
        return math.copysign(math.inf, x)


def f16_bits(x):
    if math.isinf(x):
        return 0x7C00 | (0x8000 if x < 0 else 0)
    return struct.unpack("<H", struct.pack("<e", x))[0]


def hexf(xs):
    return " ".join("%08x" % struct.unpack("<I", struct.pack("<f", v))[0] for v in xs)


# ---- centroids.py, operation for operation ----
def gaussian_pdf(x, sigma2):
    return (1.0 / math.sqrt(2 * math.pi * sigma2)) * math.exp(-x * x / (2 * sigma2))


def trapz(f, a, b, n=200):
    h = (b - a) / n
    result = 0.5 * (f(a) + f(b))
    for i in range(1, n):
        result += f(a + i * h)
    return result * h


def solve_lloyd_max(d, bits, max_iter=200, tol=1e-10):
    n_levels = 2**bits
    sigma2 = 1.0 / d
    sigma = math.sqrt(sigma2)

    def pdf(x):
        return gaussian_pdf(x, sigma2)

    lo, hi = -3.5 * sigma, 3.5 * sigma
    c = [lo + (hi - lo) * (i + 0.5) / n_levels for i in range(n_levels)]
    for _ in range(max_iter):
        bnd = [(c[i] + c[i + 1]) / 2.0 for i in range(n_levels - 1)]
        edges = [lo * 3] + bnd + [hi * 3]
        new = []
        for i in range(n_levels):
            a, b = edges[i], edges[i + 1]
            num = trapz(lambda x: x * pdf(x), a, b)
            den = trapz(pdf, a, b)
            new.append(num / den if den > 1e-15 else c[i])
        if max(abs(new[i] - c[i]) for i in range(n_levels)) < tol:
            break
        c = new
    return [f32(v) for v in c]  # torch.tensor(..., dtype=torch.float32)


def hadamard_sign(i, j):  # Sylvester [[H, H], [H, -H]]: (-1)^popcount(i & j)
    return -1.0 if bin(i & j).count("1") & 1 else 1.0


def pack(idx, bits):
    out = []
    if bits == 4:  # (idx_pairs & 0xF) << [0, 4]
        for j in range(len(idx) // 2):
            out.append(idx[2 * j] | idx[2 * j + 1] << 4)
    else:  # groups of 8 x 3 bits -> 24 bits, 3 bytes little-endian
        for g in range(len(idx) // 8):
            w = sum(idx[8 * g + i] << (3 * i) for i in range(8))
            out += [w & 0xFF, (w >> 8) & 0xFF, (w >> 16) & 0xFF]
    return out


def unpack(rec, bits, d):  # decode.py: (raw0 | raw1 << 8) >> (j*b % 8) & mask
    out = []
    for j in range(d):
        bit = j * bits
        w = rec[bit // 8] | ((rec[bit // 8 + 1] << 8) if bit // 8 + 1 < len(rec) else 0)
        out.append((w >> (bit % 8)) & ((1 << bits) - 1))
    return out


def le16(v):
    return [v & 0xFF, v >> 8]


def rd16(b0, b1):
    return struct.unpack("<e", bytes([b0, b1]))[0]


def key_encode(k, bits, cent):
    d = len(k)
    n = 1 << bits
    mid = [f32(f32(cent[i] + cent[i + 1]) / 2) for i in range(n - 1)]  # attn.py
    norm = f32(math.sqrt(sum(v * v for v in k)))  # k_flat.norm(dim=1)
    den = f32(norm + f32(1e-8))
    xh = [f32(v / den) for v in k]
    hval = f32(1.0 / f32(math.sqrt(d)))  # H / math.sqrt(d), in fp32
    idx = []
    for j in range(d):  # y = x_hat @ PiT, PiT = H (symmetric)
        y = f32(sum(xh[i] * hadamard_sign(i, j) for i in range(d)) * hval)
        lo, hi = 0, n - 1  # _tq_fused_store_mse binary search
        for _ in range(bits):
            m = (lo + hi) >> 1
            safe = min(m, n - 2)
            if y >= mid[safe]:
                lo = m + 1
            else:
                hi = m
        idx.append(min(lo, n - 1))
    return pack(idx, bits) + le16(f16_bits(f16(norm)))


def key_decode(rec, bits, cent, d):
    cb = (d * bits + 7) // 8
    idx = unpack(rec[:cb], bits, d)
    css = f32(0.0)
    for j in range(d):  # sum(k_mse * k_mse), fp32
        css = f32(css + f32(cent[idx[j]] * cent[idx[j]]))
    inv = f32(1.0 / f32(math.sqrt(f32(css + f32(1e-16)))))
    norm = rd16(rec[cb], rec[cb + 1])
    r = [f32(norm * f32(cent[i] * inv)) for i in idx]  # k_mse = c * inv; k_rot = vec_norm * k_mse
    hval = f32(1.0 / f32(math.sqrt(d)))
    return [f32(sum(r[j] * hadamard_sign(j, i) for j in range(d)) * hval) for i in range(d)]


def value_encode(v, bits):
    qmax = (1 << bits) - 1
    mn, mx = min(v), max(v)
    scale = f32(f32(mx - mn) / float(qmax))
    scale = scale if scale > f32(1e-8) else f32(1e-8)
    q = []
    for x in v:
        t = f32(f32(f32(x - mn) / scale) + 0.5)
        q.append(min(max(int(t), 0), qmax))  # .to(tl.int32) truncates
    return pack(q, bits) + le16(f16_bits(f16(scale))) + le16(f16_bits(f16(mn)))


def value_decode(rec, bits, d):
    cb = (d * bits + 7) // 8
    q = unpack(rec[:cb], bits, d)
    s, z = rd16(rec[cb], rec[cb + 1]), rd16(rec[cb + 2], rec[cb + 3])
    return [f32(float(Fraction(qi) * Fraction(s) + Fraction(z))) for qi in q]  # fused q*s+z


# E4M3FN, round to nearest even, saturating at 448 (__NV_SATFINITE)
E4M3 = sorted(
    {(0.0 if e == 0 and m == 0 else (m / 8.0) * 2.0**-6 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7), (e << 3) | m)
     for e in range(16) for m in range(8) if not (e == 15 and m == 7)}
)


def fp8_e4m3_sat(x):
    s = 0x80 if math.copysign(1.0, x) < 0 else 0
    a = abs(x)
    if a >= 448.0:
        return s | 0x7E
    best = None
    for val, code in E4M3:
        e = abs(a - val)
        if best is None or e < best[0] or (e == best[0] and code % 2 == 0):
            best = (e, code)
    return s | best[1]


def fp8_e4m3_dec(c):
    e, m = (c >> 3) & 15, c & 7
    v = (m / 8.0) * 2.0**-6 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7)
    return -v if c & 0x80 else v


def inputs(rng, d):
    def g(s):
        return f16(rng.gauss(0.0, s))

    vecs = []
    for n in range(8):
        k = [g(2.0) for _ in range(d)]
        v = [g(0.7) for _ in range(d)]
        if n == 1:
            k[3], k[17] = 40.0, -25.0  # outlier channels
        if n == 2:
            k, v = [0.5] * d, [0.25] * d  # constant: v_scale clamps to 1e-8
        if n == 3:
            k, v = [0.0] * d, [0.0] * d  # zero key: norm 0
        if n == 4:
            k, v = [g(300.0) for _ in range(d)], [g(1000.0) for _ in range(d)]  # past fp8's 448
        if n == 5:
            k, v = [g(1e-4) for _ in range(d)], [g(1e-5) for _ in range(d)]  # fp16 subnormals
        vecs.append((k, v))
    return vecs


PRESETS = [  # config.py TQ_PRESETS: (key_quant_bits, value_quant_bits, norm_correction)
    ("turboquant_k8v4", 8, 4),
    ("turboquant_4bit_nc", 4, 4),
    ("turboquant_k3v4_nc", 3, 4),
    ("turboquant_3bit_nc", 3, 3),
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "..", "tests", "data", "formats", "vllm_tq.txt")
    rng = random.Random(20251202)
    lines = ["# tools/vllm_tq_vectors.py: transcription of vLLM (see its docstring); do not edit"]
    for d in (64, 128, 256):
        cents = {b: solve_lloyd_max(d, b) for b in (3, 4)}
        for b in (3, 4):
            lines.append("centroids %d %d | %s" % (d, b, hexf(cents[b])))
        for name, kb, vb in PRESETS:
            vecs = inputs(rng, d)
            for n, (k, v) in enumerate(vecs if d < 256 else vecs[:3]):  # 256: keep the file small
                if kb == 8:  # _tq_fused_store_fp8: k.to(float8e4nv), no scale
                    krec = [fp8_e4m3_sat(x) for x in k]
                    kdec = [fp8_e4m3_dec(c) for c in krec]
                else:
                    krec = key_encode(k, kb, cents[kb])
                    kdec = key_decode(krec, kb, cents[kb], d)
                vrec = value_encode(v, vb)
                vdec = value_decode(vrec, vb, d)
                slot = krec + vrec  # [key_packed | value_packed]
                lines.append("tq %s %d %d | %s | %s | %s | %s | %s" % (
                    name, d, n, hexf(k), hexf(v), "".join("%02x" % c for c in slot), hexf(kdec), hexf(vdec)))
    # fp8 + --calculate-kv-scales: one layer, 2 kv heads, 16 first-batch tokens
    T, H, d = 16, 2, 128
    key = [[f16(rng.gauss(0.0, 3.0)) for _ in range(d)] for _ in range(T * H)]
    val = [[f16(rng.gauss(0.0, 0.8)) for _ in range(d)] for _ in range(T * H)]
    key[11][7] = 61.5
    # abs(key).max() is exact in fp16; / k_range (fp32 200) in fp32
    k_scale = f32(max(abs(x) for r in key for x in r) / 200.0)
    v_scale = f32(max(abs(x) for r in val for x in r) / 100.0)
    lines.append("fp8scales %d %d %d | %s | %s" % (T, H, d, hexf([k_scale]), hexf([v_scale])))
    later_k = [[f16(rng.gauss(0.0, 60.0)) for _ in range(d)] for _ in range(4 * H)]  # past 448 x scale
    later_v = [[f16(rng.gauss(0.0, 5.0)) for _ in range(d)] for _ in range(4 * H)]
    for which, rows, sc in (("k", key + later_k, k_scale), ("v", val + later_v, v_scale)):
        for i, r in enumerate(rows):
            codes = [fp8_e4m3_sat(f32(x / sc)) for x in r]
            lines.append("fp8 %s %d %d | %s | %s" % (which, i // H, i % H, hexf(r), "".join("%02x" % c for c in codes)))
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, out)
    print("wrote", out, len(lines), "lines")


if __name__ == "__main__":
    main()
