#!/usr/bin/env python3
"""bigmodel_check.py — `make bigmodel-check`: an 8B-class checkpoint through `kvstudio ppl`.

    KVSTUDIO=./build/kvstudio python3 tools/bigmodel_check.py [--dir DIR] [--tokens N]

Makes the Llama-3.1-8B-shaped bf16 checkpoint (tools/make_bigmodel.py, 16 GB,
written only if absent: needs 17 GB free under DIR's file system), writes N
token ids (default 64), runs `kvstudio ppl --model DIR --tokens FILE --json`
(fp16 cache, one chunk) and samples the process's /proc/PID/status every
50 ms. Prints, and fails (exit 1) when the peak is over --max-gb (18):

  peak RSS     VmHWM: the kernel's high-water mark of resident pages, read
               exactly at exit as wait4's ru_maxrss. Resident pages of the
               mapped checkpoint count in it (RssFile) as well as heap
               (RssAnon), so it is the figure to quote.
  RssFile      peak over the samples: mapped file pages resident (the
               checkpoint's weights, shared with the page cache).
  RssAnon      peak over the samples: the process's own memory (activations,
               logits, KV cache, tiles).
  wall, CPU    wall seconds of the whole command (load included), its user
               and system CPU seconds (wait4's rusage, all threads).
  tokens/s     the ppl JSON's prefill_tokens_per_s: tokens over the wall
               seconds of the forward (load excluded).

BIGMODEL_CLEAN=1 deletes the checkpoint afterwards.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def status_kb(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser()
    big = os.environ.get("BIG_DIR", "/tmp/kvs-big")
    ap.add_argument("--dir", default=os.path.join(big, "llama3.1-8b"))
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--max-gb", type=float, default=18.0)
    ap.add_argument("--python", default=sys.executable, help="a python3 with numpy, for make_bigmodel.py")
    a = ap.parse_args()
    kvs = os.environ.get("KVSTUDIO", "./build/kvstudio")
    parent = os.path.dirname(os.path.abspath(a.dir))
    os.makedirs(parent, exist_ok=True)
    if not os.path.exists(os.path.join(a.dir, "config.json")):
        free = shutil.disk_usage(parent).free
        if free < 17e9:
            print(f"bigmodel-check: {parent} has {free / 1e9:.1f} GB free (the checkpoint needs 16.1 GB)",
                  file=sys.stderr)
            return 2
    t0 = time.time()
    mk = subprocess.run([a.python, "tools/make_bigmodel.py", "--shape", "llama3.1-8b", a.dir])
    if mk.returncode:
        return mk.returncode
    print(f"checkpoint   {a.dir} ready after {time.time() - t0:.0f} s")
    cfg = json.load(open(os.path.join(a.dir, "config.json")))
    fd, tokf = tempfile.mkstemp(prefix="bigmodel_tokens.", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(" ".join(str((i * 7919 + 13) % cfg["vocab_size"]) for i in range(a.tokens)) + "\n")
    cmd = [kvs, "ppl", "--model", a.dir, "--tokens", tokf, "--json"]
    print("command      " + " ".join(cmd))
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
    at_peak = {}
    while True:   # wait4 with WNOHANG: the child's own rusage, exactly at its exit
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            break
        st = status_kb(p.pid)
        for k in peak:
            peak[k] = max(peak[k], st.get(k, 0))
        if st.get("VmRSS", 0) >= peak["VmRSS"]:
            at_peak = st
        time.sleep(0.05)
    wall = time.time() - t0
    out, err = p.stdout.read(), p.stderr.read()
    p.returncode = os.waitstatus_to_exitcode(status)
    os.remove(tokf)
    if p.returncode:
        print(f"bigmodel-check: ppl failed ({p.returncode}): {err.decode()[:400]}", file=sys.stderr)
        return 1
    return report(a, json.loads(out), peak, at_peak, wall, ru)


def report(a, res, peak, at_peak, wall, ru):
    gb = lambda kb: kb * 1024 / 1e9
    hwm = ru.ru_maxrss
    ok = gb(hwm) <= a.max_gb
    print(f"peak RSS     {gb(hwm):.2f} GB (VmHWM at exit; limit {a.max_gb:.0f} GB) {'ok' if ok else 'FAIL'}")
    print(f"  RssFile    {gb(peak['RssFile']):.2f} GB peak sampled (checkpoint pages mapped and resident)")
    print(f"  RssAnon    {gb(peak['RssAnon']):.2f} GB peak sampled (heap: activations, logits, cache, tiles)")
    print(f"  at peak    VmRSS {gb(at_peak.get('VmRSS', 0)):.2f} = RssFile {gb(at_peak.get('RssFile', 0)):.2f}"
          f" + RssAnon {gb(at_peak.get('RssAnon', 0)):.2f} GB (+ shmem)")
    print(f"time         wall {wall:.1f} s, CPU user {ru.ru_utime:.1f} s, system {ru.ru_stime:.1f} s"
          f" (load average {os.getloadavg()[0]:.2f})")
    print(f"tokens/s     {res['prefill_tokens_per_s']:.3f} ({res['n_tokens']} tokens, forward only)")
    print(f"bits/token   {res['bits_per_token']:.4f} (fp16 cache; synthetic weights, so not a quality figure)")
    if os.environ.get("BIGMODEL_CLEAN") == "1":
        shutil.rmtree(a.dir)
        print(f"removed      {a.dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
