#!/usr/bin/env python3
"""clipsight against onnxruntime on one image encoder, in one run, with the same thread count.

    python benches/compare.py [--fp32 models/vit-b32/image.onnx] [--threads 2] [--rounds 3]

The fp32 encoder defaults to the ViT-B/32-shaped random model that
`python models/make_test_models.py vit-b32` writes. The script makes the two int8 files it
needs (cached under --work):
  - ours:  `models/quantize FP32 OURS` (what clipsight runs fastest);
  - ort's: onnxruntime's own `quantize_dynamic` (QUInt8 activations, QInt8 weights), the
           reference int8 path of onnxruntime.
Then, for --rounds rounds, in an order that alternates from round to round, it times:
  ort fp32, clipsight fp32 (tract), ort dyn-int8 (its own file), clipsight int8 (tract, ours),
  clipsight int8 (`--backend ort`, ours), clipsight int8 (`--backend ort`, ort's file, which
  `models/quantize --mode ort` writes), clipsight fp32 (`--backend ort`), ort on our int8 file.
onnxruntime runs in this process (Python, CPU provider, intra-op threads = --threads, one
inter-op thread, sequential); clipsight runs `clipsight bench --model BUNDLE --onnx FILE --json`
(BUNDLE: the fp32 file's folder) and reports its encode p50. Each figure is a median of per-call times; the table gives the median of the
rounds' medians and the ratios. The machine is noisy: compare within one run only.

Needs: a release build (`cargo build --release`), the packages of models/requirements-dev.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
# The bundle of the fp32 file (its folder): its model.toml gives preprocessing and names.
FP32_BUNDLE = REPO / "models/vit-b32"


def ort_library() -> Path:
    capi = Path(ort.__file__).parent / "capi"
    libs = sorted(capi.glob("libonnxruntime.so*"))
    if not libs:
        sys.exit(f"no libonnxruntime.so under {capi}")
    return libs[0]


def time_ort(path: Path, threads: int, iters: int, warmup: int) -> tuple[float, None]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for _ in range(warmup):
        s.run(None, {name: x})
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        s.run(None, {name: x})
        ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts), None


def time_clipsight(binary: Path, path: Path, threads: int, iters: int, warmup: int,
                   backend: str) -> tuple[float, float]:
    cmd = [str(binary), "bench", "--model", str(FP32_BUNDLE), "--onnx", str(path),
           "--threads", str(threads),
           "--iters", str(iters), "--warmup", str(warmup), "--replay-fps", "0",
           "--backend", backend, "--json"]
    env = dict(os.environ, ORT_DYLIB_PATH=str(ort_library()))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return float(report["encode_ms_p50"]), float(report["peak_rss_mb"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fp32", type=Path, default=REPO / "models/vit-b32/image.onnx")
    ap.add_argument("--clipsight", type=Path, default=REPO / "target/release/clipsight")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--work", type=Path, default=REPO / "target/compare")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    global FP32_BUNDLE
    FP32_BUNDLE = args.fp32.parent

    for f in (args.fp32, args.clipsight):
        if not f.exists():
            sys.exit(f"{f}: not found (see the usage at the top of {__file__})")
    args.work.mkdir(parents=True, exist_ok=True)
    ours = args.work / (args.fp32.stem + "-clipsight-int8.onnx")
    theirs = args.work / (args.fp32.stem + "-ort-dynamic-int8.onnx")
    if not ours.exists():
        print(f"quantizing (ours) -> {ours}", flush=True)
        subprocess.run([sys.executable, str(REPO / "models/quantize.py"), str(args.fp32),
                        str(ours)], check=True)
    if not theirs.exists():
        print(f"quantizing (onnxruntime quantize_dynamic) -> {theirs}", flush=True)
        subprocess.run([sys.executable, str(REPO / "models/quantize.py"), str(args.fp32),
                        str(theirs), "--mode", "ort"], check=True)

    n, t, w = args.iters, args.threads, args.warmup
    runs = {
        "ort fp32": lambda: time_ort(args.fp32, t, n, w),
        "clipsight fp32 (tract)": lambda: time_clipsight(args.clipsight, args.fp32, t, n, w,
                                                         "tract"),
        "ort dyn-int8 (quantize_dynamic)": lambda: time_ort(theirs, t, n, w),
        "clipsight int8 (tract, models/quantize)": lambda: time_clipsight(
            args.clipsight, ours, t, n, w, "tract"),
        "clipsight int8 (--backend ort, models/quantize)": lambda: time_clipsight(
            args.clipsight, ours, t, n, w, "ort"),
        "clipsight int8 (--backend ort, models/quantize --mode ort)": lambda: time_clipsight(
            args.clipsight, theirs, t, n, w, "ort"),
        "clipsight fp32 (--backend ort)": lambda: time_clipsight(
            args.clipsight, args.fp32, t, n, w, "ort"),
        "ort on models/quantize int8": lambda: time_ort(ours, t, n, w),
    }
    results: dict[str, list[float]] = {k: [] for k in runs}
    rss: dict[str, float] = {}
    names = list(runs)
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            ms, peak = runs[name]()
            results[name].append(ms)
            if peak is not None:
                rss[name] = max(peak, rss.get(name, 0.0))
            print(f"round {r + 1}/{args.rounds}  {name:48s} {ms:8.1f} ms", flush=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\n{args.fp32}, {t} thread(s), {args.rounds} rounds x {n} iterations, "
          "median of per-round medians")
    mib = lambda p: p.stat().st_size / 2**20
    print(f"files: fp32 {mib(args.fp32):.0f} MiB, models/quantize int8 {mib(ours):.0f} MiB, "
          f"quantize_dynamic int8 {mib(theirs):.0f} MiB")
    print("| Runtime and model | ms per image | rounds | peak RSS (clipsight bench) |")
    print("|---|---|---|---|")
    for k in names:
        peak = f"{rss[k]:.0f} MiB" if k in rss else "—"
        print(f"| {k} | {med[k]:.1f} | {', '.join(f'{v:.0f}' for v in results[k])} | {peak} |")
    ratios = {
        "clipsight fp32 (tract) / ort fp32": med["clipsight fp32 (tract)"] / med["ort fp32"],
        "clipsight int8 tract / ort dyn-int8":
            med["clipsight int8 (tract, models/quantize)"] / med["ort dyn-int8 (quantize_dynamic)"],
        "clipsight int8 --backend ort / ort dyn-int8 (same file)":
            med["clipsight int8 (--backend ort, models/quantize --mode ort)"]
            / med["ort dyn-int8 (quantize_dynamic)"],
        "clipsight fp32 --backend ort / ort fp32":
            med["clipsight fp32 (--backend ort)"] / med["ort fp32"],
        "clipsight int8 tract / clipsight fp32 tract":
            med["clipsight int8 (tract, models/quantize)"] / med["clipsight fp32 (tract)"],
    }
    print()
    for k, v in ratios.items():
        print(f"{k:48s} {v:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"threads": t, "rounds": results, "median": med,
                                         "peak_rss_mb": rss, "ratios": ratios}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
