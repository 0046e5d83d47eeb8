#!/usr/bin/env python3
"""The libraries themselves against tests/data/formats/hf_cache.txt, on a CUDA
machine with torch: optimum-quanto and hqq imported from their sources
(PYTHONPATH; hqq's termcolor import may be a stub), each vector quantized as
transformers' QuantizedLayer._quantize does for an fp16 cache
(src/transformers/cache_utils.py, huggingface/transformers 004999d9):

  quanto: scale, shift = MaxOptimizer()(t, qint{2,4}, axis=0, 64)
          quantize_weight(t, qtype, 0, scale, shift, 64)
  hqq:    Quantizer.quantize(t, axis=1, device="cuda", compute_dtype=fp16,
          nbits, group_size=64); meta cast with Quantizer.cuda

t: the vector as a [1, 1, 1, 128] fp16 CUDA tensor. Compared with each line:
the codes (quanto: unpacked here from its own packed tensor, whose bytes the
`tensor` lines check; hqq: before BitPack, bitpack=False), the fp16 scales and
shifts/zeros, and the dequantized values (quanto: QBitsDequantizer's
arithmetic on the library's tensors, since its CUDA unpack kernel needs the
extension built; hqq: its own Quantizer.dequantize). Prints one summary line
per backend and width, and every mismatch (at most 20 each).

Also, per vector, transformers' own Quanto/HQQQuantizedLayer (the device's
transformers) against the direct call.

    PYTHONPATH=DIR python3 tools/hf_cache_peer.py tests/data/formats/hf_cache.txt

DIR: optimum/ of huggingface/optimum-quanto e33f8202 and hqq/ of mobiusml/hqq
e0b1d00e (`git archive`), a termcolor.py holding `def colored(s, *a, **k):
return s`, and optimum_quanto-0.2.7.dist-info / hqq-0.2.8.dist-info folders
with a METADATA (Name, Version) so transformers' version checks pass.
NOT RUN YET: the lent GPU machine takes at most 64 MiB of working tree and
this repository's tracked files alone are 76 MB (sample_data), so this
check waits for a CUDA machine with torch that can hold the checkout.
"""
import struct
import sys

import numpy as np
import torch

from hqq.core.quantize import Quantizer
from optimum.quanto import MaxOptimizer, qint2, qint4, quantize_weight

dev = "cuda"


def quanto_unpack(packed, bits, rows):  # inverse of tensor/packed.py pack_weights
    per = 8 // bits
    out = torch.cat([(packed >> (bits * i)) & ((1 << bits) - 1) for i in range(per)])
    return out[:rows]


def run_quanto(t, bits):
    qt = qint4 if bits == 4 else qint2
    scale, shift = MaxOptimizer()(t, qt, 0, 64)
    q = quantize_weight(t, qt, 0, scale, shift, 64)
    packed = q._data._data
    rows = t.numel() // 64
    codes = quanto_unpack(packed, bits, rows)
    dq = q._scale * codes          # tensor/qbits.py QBitsDequantizer, float shift
    dq -= q._shift
    return (codes.reshape(-1).cpu().numpy(), q._scale.reshape(-1).cpu().numpy().astype(np.float16),
            q._shift.reshape(-1).cpu().numpy().astype(np.float16), dq.reshape(-1).cpu().numpy(), packed)


def run_hqq(t, bits, bitpack=False):
    # bitpack=False: the codes before packing (BitPack's 2- and 1-bit packers need 4 and 8 rows of 64,
    # one vector of 128 has 2); the arithmetic is the same. Packing is checked on the tensor lines.
    W_q, meta = Quantizer.quantize(t, axis=1, device=dev, compute_dtype=torch.float16, nbits=bits, group_size=64,
                                   bitpack=bitpack)
    meta["compute_dtype"] = torch.float16
    Quantizer.cuda(W_q, meta=meta, device=dev)
    dq = Quantizer.dequantize(W_q, meta)
    codes = W_q.to(torch.uint8) if not bitpack else None
    return (None if codes is None else codes.reshape(-1).cpu().numpy(), meta["scale"].reshape(-1).cpu().numpy(),
            meta["zero"].reshape(-1).cpu().numpy(), dq.reshape(-1).cpu().numpy(), W_q)


def via_transformers(t, backend, bits):
    """transformers' own layer (its prefill quantizes the states): equal to the direct call?"""
    from transformers.cache_utils import HQQQuantizedLayer, QuantoQuantizedLayer
    if backend == "quanto":
        layer = QuantoQuantizedLayer(nbits=bits, axis_key=0, axis_value=0, q_group_size=64, residual_length=128)
        layer.update(t, t)
        q = layer._quantized_keys
        _, sc, zs, _, packed = run_quanto(t, bits)
        return (torch.equal(q._data._data, packed) and q._scale.reshape(-1).cpu().numpy().tobytes() == sc.tobytes()
                and q._shift.reshape(-1).cpu().numpy().tobytes() == zs.tobytes())
    layer = HQQQuantizedLayer(nbits=bits, axis_key=1, axis_value=1, q_group_size=64, residual_length=128)
    layer.update(t, t)
    W_q, meta = layer._quantized_keys
    _, sc, zs, _, W_d = run_hqq(t, bits, bitpack=True)
    return (torch.equal(W_q, W_d) and meta["scale"].reshape(-1).cpu().numpy().tobytes() == sc.tobytes()
            and meta["zero"].reshape(-1).cpu().numpy().tobytes() == zs.tobytes())


def rec_codes(backend, bits, rec, d):
    if backend == "quanto":
        v = int.from_bytes(rec[:d * bits // 8], "little")
        return [(v >> (i * bits)) & ((1 << bits) - 1) for i in range(d)], d * bits // 8
    if bits == 3:
        nw = (d + 9) // 10
        words = struct.unpack("<%dI" % nw, rec[:4 * nw])
        return [(words[i // 10] >> (27 - 3 * (i % 10))) & 7 for i in range(d)], 4 * nw
    per = 8 // bits
    return [(rec[i // per] >> (8 - bits * (i % per + 1))) & ((1 << bits) - 1) for i in range(d)], d * bits // 8


def main():
    stats, shown = {}, {}
    for line in open(sys.argv[1]):
        parts = [p.strip() for p in line.split("|")]
        head = parts[0].split()
        tensor = head[0] == "tensor"
        backend, bits = (head[1], int(head[2])) if tensor else (head[0], int(head[1]))
        x = np.array([struct.unpack(">f", bytes.fromhex(h))[0] for h in parts[1].split()], dtype=np.float32)
        T = int(head[3]) if tensor else 1
        t = torch.tensor(x, device=dev).to(torch.float16).reshape(1, 1, T, -1).contiguous()
        key = f"{'tensor ' if tensor else ''}{backend} {bits}"
        st = stats.setdefault(key, [0, 0, 0, 0, 0])   # lines, codes equal, scales equal, zeros equal, decode equal
        st[0] += 1
        bad = []
        if tensor:
            want = bytes.fromhex(parts[2])
            D = t.shape[-1]
            if backend == "quanto":
                # quanto's groups are 64 values: a tensor of T vectors quantizes as T alone
                lib = run_quanto(t, bits)[4].contiguous().cpu().numpy().tobytes()
            else:
                # hqq's early stop sees the whole tensor: pack the codes of each vector alone with BitPack
                rows = torch.cat([torch.from_numpy(run_hqq(t[..., i:i + 1, :], bits)[0]).reshape(-1, 64)
                                  for i in range(T)]).to(dev)
                lib = Quantizer.pack[Quantizer.bit_to_packing[bits]](rows).contiguous().cpu().numpy().tobytes()
                whole = run_hqq(t, bits)[0].astype(np.int64)
                alone = rows.reshape(-1).cpu().numpy().astype(np.int64)
                st[2] += int((whole == alone).all())   # column 2 here: whole tensor = one by one
            ok = lib == want
            st[1] += ok
            if not ok:
                bad.append(f"packed tensor differs ({len(lib)} vs {len(want)} bytes)")
        else:
            codes, sc, zs, dq, _ = (run_quanto if backend == "quanto" else run_hqq)(t, bits)
            rec = bytes.fromhex(parts[2])
            mine, cb = rec_codes(backend, bits, rec, len(x))
            ng = len(x) // 64
            msc = np.frombuffer(rec[cb:cb + 2 * ng], dtype="<f2")
            mzs = np.frombuffer(rec[cb + 2 * ng:cb + 4 * ng], dtype="<f2")
            mdq = np.frombuffer(bytes.fromhex(parts[3]), dtype="<f2")
            eq = [list(codes) == mine, sc.tobytes() == msc.tobytes(), zs.tobytes() == mzs.tobytes(),
                  dq.astype(np.float16).tobytes() == mdq.tobytes()]
            for i, e in enumerate(eq):
                st[1 + i] += e
            tf = stats.setdefault("transformers " + key, [0, 0, 0])   # lines, equal, failed to run
            tf[0] += 1
            try:
                tf[1] += bool(via_transformers(t, backend, bits))
            except Exception as e:   # hqq's 2- and 1-bit packers on one vector (2 rows of 64)
                tf[2] += 1
                if tf[2] == 1:
                    print(f"transformers {key}: {type(e).__name__}: {str(e)[:160]}")
            if not eq[0]:
                diff = [i for i in range(len(mine)) if mine[i] != codes[i]]
                bad.append(f"codes differ at {diff[:8]} (of {len(diff)}): lib {[int(codes[i]) for i in diff[:4]]}, "
                           f"vectors {[mine[i] for i in diff[:4]]}")
            if not eq[1]:
                bad.append(f"scales lib {sc.tolist()} vectors {msc.tolist()}")
            if not eq[2]:
                bad.append(f"shift/zero lib {zs.tolist()} vectors {mzs.tolist()}")
            if not eq[3]:
                n = int((dq.astype(np.float16) != mdq).sum())
                bad.append(f"{n} decoded values differ, max |diff| {np.abs(dq.astype(np.float32) - mdq).max():.3g}")
        for b in bad:
            if shown.get(key, 0) < 20:
                print(f"MISMATCH {key} line {st[0]}: {b}")
                shown[key] = shown.get(key, 0) + 1
    print("backend bits: lines, codes equal, scales equal, shifts/zeros equal, decode equal")
    print("tensor lines: lines, packed bytes equal, (hqq) codes of the whole tensor equal to one by one")
    print("transformers lines: lines, its QuantizedLayer's tensors equal to the direct call, failed to run")
    for k, v in stats.items():
        print(k + ":", " ".join(map(str, v)))
    print("torch", torch.__version__, torch.cuda.get_device_name(0))


if __name__ == "__main__":
    main()
