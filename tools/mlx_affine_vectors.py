#!/usr/bin/env python3
"""Test vectors for mlx:affine_g* (engine/methods/mlx_affine.c): an independent
transcription, in plain Python with float32 emulated through struct, of
mx.quantize's affine arithmetic as mlx/backend/cpu/quantized.cpp `quantize`
(ml-explore/mlx 846d176227a0ac13d2667e58d2bb68b322109ab0, lines 1149-1206)
and the packing of mlx/backend/common/quantized.h (get_pack_factor,
get_bytes_per_pack, lines 5-12): codes LSB first in one little-endian bit
stream. Writes tests/data/formats/mlx_affine.txt, one vector a line:
`group bits | inputs (float32 hex) | record bytes (hex)`, the record as
kvstudio lays it out (codes, fp16 scales, fp16 biases).

    python3 tools/mlx_affine_vectors.py > tests/data/formats/mlx_affine.txt
"""
import random
import struct


def f32(x):  # round a double to float32 (one IEEE op rounded once: exact emulation)
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f16_bytes(x):  # round to half, nearest even, as static_cast<float16_t>
    return struct.pack("<e", x)


def f16(x):
    return struct.unpack("<e", f16_bytes(x))[0]


def quantize_group(w, bits):
    n_bins = f32((1 << bits) - 1)
    eps = f32(1e-7)
    w_max, w_min = max(w), min(w)
    mask = abs(w_min) > abs(w_max)
    scale = max(f32((w_max - w_min) / n_bins), eps)
    scale = scale if mask else -scale
    edge = w_min if mask else w_max
    q0 = round(f32(edge / scale))  # std::rint: half to even, like round()
    bias = 0.0
    if q0 != 0:
        scale = f32(edge / q0)
        bias = edge
    qs = [min(max(round(f32(f32(x - bias) / scale)), 0), int(n_bins)) for x in w]
    return qs, scale, bias


def record(x, g, bits):
    d = len(x)
    x = [f16(v) for v in x]  # mlx_lm quantizes the fp16 cache tensors
    stream, scales, biases = 0, b"", b""
    for gi in range(d // g):
        qs, s, b = quantize_group(x[gi * g:(gi + 1) * g], bits)
        for j, q in enumerate(qs):
            stream |= q << ((gi * g + j) * bits)
        scales += f16_bytes(s)
        biases += f16_bytes(b)
    return stream.to_bytes(d * bits // 8, "little") + scales + biases


def main():
    rng = random.Random(14)
    d = 128
    cases = []
    for g in (32, 64, 128):
        for bits in (2, 3, 4, 5, 6, 8):
            for kind in ("gauss", "outlier", "positive", "negative"):
                x = [rng.gauss(0, 1) for _ in range(d)]
                if kind == "outlier":
                    x[rng.randrange(d)] = 40.0
                elif kind == "positive":
                    x = [abs(v) + 0.5 for v in x]
                elif kind == "negative":
                    x = [-abs(v) for v in x]
                cases.append((g, bits, x))
            # edge cases: a constant group (max == min), all zeros, ties
            cases.append((g, bits, [0.75] * d))
            cases.append((g, bits, [0.0] * d))
            cases.append((g, bits, [((i % 5) - 2) * 0.5 for i in range(d)]))
    for g, bits, x in cases:
        xs = [f32(v) for v in x]
        hx = " ".join(struct.pack(">f", v).hex() for v in xs)
        print(f"{g} {bits} | {hx} | {record(xs, g, bits).hex()}")


if __name__ == "__main__":
    main()
