#!/usr/bin/env python3
# tools/methods_table.py OUT_DIR — formats the JSON of tools/methods_table.sh into
# docs/methods_table.md (run from the repository root).
import json, os, glob, sys, io, contextlib
# --level N: heading level (README.md uses 4); --rows-only: the method tables only (no
# best-per-budget summary; what `make docs-check` compares for a subset of runs).
args = [a for a in sys.argv[1:] if not a.startswith('--')]
H = '#' * (int(sys.argv[sys.argv.index('--level') + 1]) if '--level' in sys.argv else 3)
args = [a for a in args if not a.isdigit()]
D = args[0] if args else '/tmp/kvstudio-methods-table'
if not glob.glob(f'{D}/[KV]_*.json'):
    sys.exit(f'methods_table_fmt: {D}: no runs (K_*.json, V_*.json); run tools/methods_table.sh {D} first')
def load(name):
    p = f'{D}/{name}.json'
    if not os.path.exists(p) or os.path.getsize(p) == 0: return None
    try: return json.load(open(p))
    except Exception: return None
def f(v, n=4):
    if v is None: return '—'
    if n == 4 and 0 < abs(v) < 1e-3: return f'{v:.1e}'
    return f'{v:.{n}f}'
def krow(label, bitsarg, key):
    c, p = load(f'K_code_{key}'), load(f'K_prose_{key}')
    if not c and not p: return None
    bc = c['keys']['bits_per_coord'] if c else None
    bp = p['keys']['bits_per_coord'] if p else None
    bits = f(bc, 3) if (bc is not None and (bp is None or abs(bc - bp) < 1e-9)) else f'{f(bc,3)} / {f(bp,3)}'
    sides = [r['keys'].get('bits_per_coord_with_side') for r in (c, p) if r]
    cells = [label, bitsarg, bits, f(max(sides), 3) if sides and None not in sides else '—']
    for r in (c, p):
        if r: cells += [f(r['keys']['relative_mse']), f(r['keys']['cosine']), f(r['ip_relative_error'])]
        else: cells += ['—'] * 3
    return '| ' + ' | '.join(cells) + ' |'
def vrow(label, bitsarg, key):
    c, p = load(f'V_code_{key}'), load(f'V_prose_{key}')
    if not c and not p: return None
    cells = [label, bitsarg, f((c or p)['values']['bits_per_coord'], 3)]
    for r in (c, p):
        cells += [f(r['values']['relative_mse']), f(r['values']['cosine'])] if r else ['—'] * 2
    return '| ' + ' | '.join(cells) + ' |'
KH = ('| method | --bits | bits held | + side tables @1k | code rel MSE | code cos | code q.k err | prose rel MSE | prose cos | prose q.k err |\n'
      '|---|---|---|---|---|---|---|---|---|---|')
out = []
def sec(title, rows, head=KH):
    rows = [r for r in rows if r]
    if rows: out.extend([f'{H} {title}', '', head] + rows + [''])
sec('Baselines (llama.cpp formats, KIVI); keys, values fp16', [
    krow('fp16', '16', 'fp16_16'), krow('q8_0', '8', 'q8_0_8'), krow('q4_0', '4', 'q4_0_4'),
    krow('iq4_nl', '4', 'iq4_nl_4'), krow('q4_0_hadamard', '4', 'q4_0_hadamard_4'),
    krow('kivi', '2', 'kivi_2'), krow('kivi', '3', 'kivi_3'), krow('kivi', '4', 'kivi_4')])
rows = []
for m in ['turboquant_mse', 'turboquant_prod', 'polarquant']:
    for b in (2, 3, 4): rows.append(krow(m, str(b), f'{m}_{b}'))
for b in (1, 2): rows.append(krow('turboquant_rvq (2 passes)', str(b), f'turboquant_rvq_{b}'))
rows.append(krow('qjl (m = 128, 4 outliers)', '1', 'qjl_1'))
for oc in (32, 48, 64):
    for b in (2, 3, 4): rows.append(krow(f'turboquant_mse, outlier_channels {oc}', str(b), f'turboquant_mse_oc{oc}_{b}'))
sec('Calibration-free methods; keys, values fp16', rows)
rows = []
for m in ['spectral', 'rabitq', 'ratequant', 'vecinfer', 'commvq']:
    for b in (2, 3, 4): rows.append(krow(m, str(b), f'{m}_{b}'))
sec('Calibrated methods (artifacts from the *other* trace: out of sample); keys, values fp16', rows)
VH = ('| value method | --value-bits | bits held | code rel MSE | code cos | prose rel MSE | prose cos |\n'
      '|---|---|---|---|---|---|---|')
rows = []
for b in (2, 3, 4): rows.append(vrow('turboquant_mse (default)', str(b), f'turboquant_mse_{b}'))
for b in (2, 3, 4): rows.append(vrow('kivi (per token)', str(b), f'kivi_{b}'))
rows += [vrow('q4_0', '4', 'q4_0_4'), vrow('iq4_nl', '4', 'iq4_nl_4'), vrow('q8_0', '8', 'q8_0_8')]
sec('Values (keys fp16)', rows, VH)
print('\n'.join(out))
if '--rows-only' in sys.argv: sys.exit(0)
# ---- best per budget ----
import re
rows = {}
for p in glob.glob(f'{D}/K_code_*.json'):
    key = os.path.basename(p)[len('K_code_'):-5]
    c, pr = load(f'K_code_{key}'), load(f'K_prose_{key}')
    if not c or not pr: continue
    rows[key] = (c['keys']['bits_per_coord'], (c['keys']['relative_mse'] + pr['keys']['relative_mse']) / 2,
                 (c['ip_relative_error'] + pr['ip_relative_error']) / 2,
                 max(c['keys'].get('bits_per_coord_with_side', 99), pr['keys'].get('bits_per_coord_with_side', 99)))
peers = {2.5: ['none given'], 3.5: ['C TurboQuant port 0.0424 (3.5)', 'TurboQuant-MSE 0.034 (3.125)'],
         4.5: ['ggml q4_0 0.0109 (4.5)', 'ggml iq4_nl 0.0078 (4.5)', 'C TurboQuant port 0.0087 (4.5)',
               'TurboQuant-MSE 0.0094 (4.125)']}
def best(title, bits_of):
    print(H + title[3:] + '\n')
    print('| budget (bits <=) | lowest rel MSE: config (bits, MSE) | lowest q.k err: config (bits, err) | peer figures at this budget |')
    print('|---|---|---|---|')
    for bud in (2.5, 3.5, 4.5):
        cand = {k: v for k, v in rows.items() if bits_of(v) <= bud + 1e-9}
        if not cand: continue
        km = min(cand, key=lambda k: cand[k][1]); ki = min(cand, key=lambda k: cand[k][2])
        print(f'| {bud} | {km} ({bits_of(cand[km]):.3f}, {cand[km][1]:.4f}) | {ki} ({bits_of(cand[ki]):.3f}, {cand[ki][2]:.4f}) | {"; ".join(peers[bud])} |')
    print()
best('### Best measured key configuration within each budget: record bits (mean of the two traces)', lambda v: v[0])
best('### The same, counting side tables at 1024 tokens (rotations, codebooks, centroids, eigenbases)', lambda v: v[3])
print('(config names: METHOD_BITS, `oc48` = --outlier-channels 48. Peer figures (key rel MSE, bits) are'
      ' the issue\'s; our q4_0, iq4_nl and turboquant_mse rows reproduce theirs. The issue gives no peer at 2.5.'
      ' Side tables are fixed per (layer, kv head) and amortize: at 32K tokens they add 1/32 of the 1K figure.)\n')
