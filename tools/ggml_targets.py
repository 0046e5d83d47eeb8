#!/usr/bin/env python3
"""ggml_targets.py — issue 16's targets, read off the "ggml" section of
bench/results.json (what `make bench` / build/bench/ggml_bench wrote), as
the markdown table the README's Performance section shows.

Every figure is a median of per-round time ratios from one run of the
bench (alternating rounds), with its min and max; kvstudio faster = a
speed-up > 1. Bytes/s are kernel throughputs with unit "B" (the records a
kvstudio cache holds; the streaming read of ggml's K+V bytes).

Usage: python3 tools/ggml_targets.py [results.json ...]: the first file's
table; with more files each row adds the other runs' medians in brackets.
"""
import json
import sys


def rows(g, name, threads):
    return [r for r in g["rows"] if r["row"] == name and r["threads"] == threads]


def row(g, name, threads):
    r = rows(g, name, threads)
    if not r:
        sys.exit(f"ggml_targets: no row '{name}' at {threads} thread(s) in the results (run BENCH_ONLY=ggml build/bench/ggml_bench)")
    return r[0]


def kernel(r, name):
    for k in r["kernels"]:
        if k["name"] == name:
            return k
    sys.exit(f"ggml_targets: row '{r['row']}' has no kernel '{name}'")


def speedup(r, name):
    """(median, min, max) speed-up of kernel `name` over the row's first kernel."""
    q = r["ratios_to_first"][name]
    return 1 / q["median"], 1 / q["max"], 1 / q["min"]


def fmt(s):
    return f"**{s[0]:.2f}x** [{s[1]:.2f}, {s[2]:.2f}]"


def verdict(ok):
    return "met" if ok else "**not met**"


def targets(g):
    out = []
    for tq, how in (("kvstudio tq_mse3/2", ""), ("kvstudio tq_mse3/2 int8 query", ", query_int8")):
        out += attention_targets(g, tq, how)
    r = row(g, "vec_dot q4_0, 16384 keys", 1)
    for name, what in (("kvstudio score turboquant_mse 3-bit", "3-bit codes"),
                       ("kvstudio score turboquant_mse 4-bit", "4-bit codes"),
                       ("kvstudio score tq_mse 3-bit int8 query", "3-bit codes, query_int8")):
        s = speedup(r, name)
        out.append((f"scoring from {what} >= ggml q4_0 vec_dot keys/s",
                    f"{kernel(r, name)['throughput'] / 1e6:.1f} vs {kernel(r, 'ggml vec_dot q4_0')['throughput'] / 1e6:.1f} M keys/s: {fmt(s)}",
                    verdict(s[0] >= 1), f"{s[0]:.2f}x"))
    r = row(g, "quantize q8_0, 16384 vectors", 1)
    name = "kvstudio encode turboquant_mse 3-bit"
    s = speedup(r, name)
    out.append(("encode tq_mse 3-bit >= 0.5x ggml q8_0 quantize",
                f"{kernel(r, name)['throughput'] / 1e6:.1f} vs {kernel(r, 'ggml from_float q8_0')['throughput'] / 1e6:.1f} M vectors/s: {fmt(s)}",
                verdict(s[0] >= 0.5), f"{s[0]:.2f}x"))
    # thread scaling: medians of different rows' calls (not alternated)
    for label, rn, kn in (("attention 64K", "attend 64k tq_mse3 (K 3-bit, V 2-bit)", "kvstudio tq_mse3/2"),
                          ("encode", "quantize q8_0, 16384 vectors", "kvstudio encode turboquant_mse 3-bit")):
        k1, k2 = kernel(row(g, rn, 1), kn), kernel(row(g, rn, 2), kn)
        x = k1["median_ms"] / k2["median_ms"]
        la = row(g, rn, 2).get("loadavg_1min")
        out.append((f"2 threads >= 1.8x 1 thread, {label}",
                    f"{k1['median_ms']:.3f} -> {k2['median_ms']:.3f} ms: **{x:.2f}x** (load average {la:.2f})", verdict(x >= 1.8), f"{x:.2f}x"))
    return out


def attention_targets(g, tq, how):
    """The decode-attention targets of kernel `tq` (how: its label's tail)."""
    out = []
    for n in ("16k", "64k"):
        r = row(g, f"attend {n} f16", 1)
        s = speedup(r, tq)
        f16, k = kernel(r, "ggml flash_attn_ext f16"), kernel(r, tq)
        out.append((f"decode attention tq_mse 3-bit K / 2-bit V{how} vs ggml f16 flash_attn_ext, {n.upper()}, >= 4x",
                    f"{k['median_ms']:.3f} vs {f16['median_ms']:.3f} ms: {fmt(s)}", verdict(s[0] >= 4), f"{s[0]:.2f}x"))
    for n in ("16k", "64k"):
        r = row(g, f"attend {n} tq_mse3 (K 3-bit, V 2-bit)", 1)
        s = speedup(r, tq)
        q4, k = kernel(r, "ggml flash_attn_ext q4_0"), kernel(r, tq)
        out.append((f"the same{how} vs ggml q4_0, {n.upper()}, >= 8x",
                    f"{k['median_ms']:.3f} vs {q4['median_ms']:.3f} ms: {fmt(s)}", verdict(s[0] >= 8), f"{s[0]:.2f}x"))
    r = row(g, "attend 1k f16", 1)
    s = speedup(r, tq)
    out.append((f"the same{how} vs ggml f16 at 1K, >= 1.5x",
                f"{kernel(r, tq)['median_ms']:.3f} vs {kernel(r, 'ggml flash_attn_ext f16')['median_ms']:.3f} ms: {fmt(s)}",
                verdict(s[0] >= 1.5), f"{s[0]:.2f}x"))
    r = row(g, "attend 64k tq_mse3 (K 3-bit, V 2-bit)", 1)
    k = kernel(r, tq)
    st = [x for x in r["kernels"] if x["name"].startswith("stream read")][0]
    if k.get("throughput_unit") == "B" and st.get("throughput_unit") == "B":
        frac = k["throughput"] / st["throughput"]
        out.append((f"64K effective bytes/s{how} >= 50% of the streaming read",
                    f"{k['throughput'] / 1e9:.2f} GB/s of records vs {st['throughput'] / 1e9:.2f} GB/s read: {100 * frac:.0f}%",
                    verdict(frac >= 0.5), f"{100 * frac:.0f}%"))
    return out


def main():
    paths = sys.argv[1:] or ["bench/results.json"]
    runs = []
    for p in paths:
        try:
            with open(p) as f:
                runs.append(json.load(f)["ggml"])
        except (OSError, ValueError) as e:
            sys.exit(f"ggml_targets: {p}: {e.strerror if isinstance(e, OSError) else e}")
        except (KeyError, TypeError):
            sys.exit(f"ggml_targets: {p}: no \"ggml\" section (expected bench/results.json after `make bench` with `make peers`)")
    g = runs[0]
    out = targets(g)
    others = [targets(r) for r in runs[1:]]
    print(f"ggml {g['ggml_commit'][:8]}, load average {g['loadavg_start']:.2f} -> {g['loadavg_end']:.2f}, {g['rounds']} rounds")
    print()
    print("| issue 16 target | reached (1 thread unless said; median [min, max] of per-round ratios) | |")
    print("|---|---|---|")
    for i, (a, b, c, _) in enumerate(out):
        more = ", ".join(o[i][3] for o in others)
        if more:
            b += f" (other runs: {more})"
        print(f"| {a} | {b} | {c} |")


if __name__ == "__main__":
    main()
