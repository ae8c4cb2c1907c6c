#!/usr/bin/env python3
"""Parity of exported CLIP bundles: PyTorch (open_clip) against the clipsight runtime (tract).

For each architecture, on seeded random weights (no model hub is needed):

1. exports a bundle per weight storage with `models/export_clip.py --random-init`
   (`--weights W --text-weights W`, W in fp32 / fp16 / int8), timing it;
2. runs the PyTorch model on real photos (tests/fixtures/photos/*.jpg and the first
   calibration photos) and on the tokenizer corpus (models/tokenizer_corpus.txt plus a few
   prompts holding control characters), and the bundle through the clipsight library
   (`examples/embed.rs`: decode, PIL-exact preprocessing, tract, the Rust tokenizer);
3. compares: image and text embedding cosine (min/mean) against the fp32 PyTorch model, the
   spread (pairwise cosines between different photos and between prompts, so a high parity
   cosine means something), token ids against open_clip's tokenizer, and the preprocessed
   tensors against open_clip's `preprocess` transform.

Usage (repository root, with the packages of models/requirements-clip.txt and cargo):

    python models/parity_clip.py [--archs ViT-B-32 MobileCLIP2-S0] [--weights fp32 fp16 int8]

Writes models/parity/ (git-ignored): the bundles, results.json and summary.md (the tables in
models/README.md). Exit status 1 when a fp32 check misses its target.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import export_clip  # noqa: E402

OUT = HERE / "parity"
# Architecture -> extra export flags. MobileCLIP2-S0's random init is degenerate (every photo
# and prompt maps to nearly one direction), hence --perturb-init (see export_clip.perturb_init).
ARCHS = {
    "ViT-B-32": [],
    "MobileCLIP2-S0": ["--perturb-init"],
}
N_CALIBRATION_PHOTOS = 14
TARGET_COS = 0.999
TARGET_TOKENS = 0.995
TARGET_PIXEL_LEVELS = 3.0
# Prompts a line-based corpus file cannot hold.
EXTRA_PROMPTS = [
    "line one\nline two",
    "carriage\r\nreturn and\rcr",
    "bell\x07char",
    "nul\x00char",
    "form\x0cfeed",
    "tab\tand\x0bvertical tab",
    "escape \x1b[31mred\x1b[0m text",
    "byte order mark \ufeffinside",
]


def log(msg: str) -> None:
    print(msg, flush=True)


def corpus() -> list[str]:
    lines = (HERE / "tokenizer_corpus.txt").read_text(encoding="utf-8").split("\n")
    return [line for line in lines if line and not line.startswith("# ")] + EXTRA_PROMPTS


def photos() -> list[Path]:
    fixtures = sorted((REPO / "tests" / "fixtures" / "photos").glob("*.jpg"))
    calib = sorted((REPO / "prompts" / "calibration").glob("*.jpg"))[:N_CALIBRATION_PHOTOS]
    return fixtures + calib


def embed_binary(args) -> Path:
    if args.embed_bin:
        return Path(args.embed_bin)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    log("building examples/embed.rs (cargo build --release --example embed)")
    subprocess.run(["cargo", "build", "--release", "--example", "embed"], cwd=REPO, check=True)
    return target / "release" / "examples" / "embed"


def run_embed(binary: Path, bundle: Path, images: list[Path], texts: list[str],
              pixels_dir: Path | None) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    texts_file = OUT / "texts.json"
    texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    cmd = [str(binary), "--model", str(bundle), "--texts-json", str(texts_file)]
    for p in images:
        cmd += ["--image", str(p)]
    if pixels_dir is not None:
        cmd += ["--dump-pixels", str(pixels_dir)]
    res = subprocess.run(cmd, check=True, capture_output=True)
    return json.loads(res.stdout)


def norm(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def pairwise(e: np.ndarray) -> dict:
    c = norm(e) @ norm(e).T
    off = c[~np.eye(len(c), dtype=bool)]
    return {"min": float(off.min()), "mean": float(off.mean()), "max": float(off.max())}


def torch_reference(arch: str, state: Path, bundle: Path, imgs: list[Path], texts: list[str]):
    """The fp32 PyTorch model with the exported weights: embeddings, preprocessed tensors and
    token ids, open_clip's way (EXIF orientation applied first, as the runtime does)."""
    import open_clip
    import torch
    from PIL import Image, ImageOps

    info = json.loads((bundle / "export.json").read_text(encoding="utf-8"))
    model, _ = export_clip.build_model(arch, info["tag"], None, True, 0)
    model.load_state_dict(torch.load(state, weights_only=True))
    model.eval()
    p = info["preprocess"]
    size = p["size"][0] if isinstance(p["size"], list) else p["size"]
    preprocess = open_clip.image_transform(size, is_train=False, mean=p["mean"], std=p["std"],
                                           resize_mode=p["resize_mode"],
                                           interpolation=p["interpolation"])
    tok = open_clip.get_tokenizer(arch)
    xs = []
    for path in imgs:
        with Image.open(path) as im:
            im.load()
            xs.append(preprocess(ImageOps.exif_transpose(im)))
    x = torch.stack(xs)
    ids = tok(texts)
    with torch.no_grad():
        img = torch.cat([model.encode_image(x[i:i + 4]) for i in range(0, len(x), 4)]).numpy()
        txt = torch.cat([model.encode_text(ids[i:i + 32])
                         for i in range(0, len(ids), 32)]).numpy()
    return {"image": img, "text": txt, "pixels": x.numpy(), "ids": ids.numpy(),
            "std": np.array(p["std"], np.float32), "preprocess": preprocess}


REUSE = False  # --reuse: keep bundles already exported by an earlier run


def export(arch: str, weights: str, state: Path, seed: int = 0) -> tuple[Path, float, dict]:
    out = OUT / f"{arch}-{weights}"
    if REUSE and (out / "export.json").exists() and state.exists():
        info = json.loads((out / "export.json").read_text(encoding="utf-8"))
        log(f"   reusing {out}")
        return out, float(sum(info["seconds"].values())), info
    cmd = [sys.executable, str(HERE / "export_clip.py"), "--model", arch, "--random-init",
           "--seed", str(seed), "--weights", weights, "--text-weights", weights,
           "--out", str(out), "--save-torch", str(state)] + ARCHS[arch]
    log("$ " + " ".join(cmd[1:]))
    t = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.time() - t
    if res.returncode != 0:
        log(res.stdout[-3000:] + res.stderr[-3000:])
        raise SystemExit(f"export of {arch} ({weights}) failed")
    for line in res.stdout.splitlines():
        if "cosine" in line or "token ids" in line or "perturbed" in line or ".onnx:" in line:
            log("   " + line.strip())
    info = json.loads((out / "export.json").read_text(encoding="utf-8"))
    return out, dt, info


def check_arch(arch: str, weights_list: list[str], binary: Path, imgs: list[Path],
               texts: list[str]) -> dict:
    state = OUT / f"{arch}.pt"
    result = {"arch": arch, "export_flags": ARCHS[arch], "variants": {}}
    ref = None
    for weights in weights_list:
        log(f"== {arch}, {weights} weights")
        bundle, seconds, info = export(arch, weights, state)
        if ref is None:
            log("   PyTorch reference")
            ref = torch_reference(arch, state, bundle, imgs, texts)
            result["perturbed"] = info.get("perturbed", [])
            result["preprocess"] = info["preprocess"]
            result["spread_torch"] = {"image": pairwise(ref["image"]),
                                      "text": pairwise(ref["text"])}
        pixels_dir = OUT / f"pixels-{arch}" if weights == weights_list[0] else None
        log("   clipsight (tract)")
        t = time.time()
        rust = run_embed(binary, bundle, imgs, texts, pixels_dir)
        rust_seconds = time.time() - t
        ri = np.array([e["embedding"] for e in rust["images"]], np.float32)
        rt = np.array([e["embedding"] for e in rust["texts"]], np.float32)
        ci = (norm(ri) * norm(ref["image"])).sum(1)
        ct = (norm(rt) * norm(ref["text"])).sum(1)
        same_ids = (np.array([e["ids"] for e in rust["texts"]], np.int64) == ref["ids"]).all(1)
        ct_same = ct[same_ids]
        encode_ms = sorted(e["encode_ms"] for e in rust["images"])
        v = {
            "export_seconds": round(seconds, 1),
            "image_onnx_mb": round((bundle / "image.onnx").stat().st_size / 1e6, 1),
            "text_onnx_mb": round((bundle / "text.onnx").stat().st_size / 1e6, 1),
            "image_cos": {"min": float(ci.min()), "mean": float(ci.mean()),
                          "worst": imgs[int(ci.argmin())].name},
            "text_cos": {"min": float(ct_same.min()), "mean": float(ct_same.mean()),
                         "prompts": int(same_ids.sum()),
                         "worst": [t for t, ok in zip(texts, same_ids) if ok][
                             int(ct_same.argmin())]},
            "text_cos_all_prompts": {"min": float(ct.min()), "mean": float(ct.mean()),
                                     "worst": texts[int(ct.argmin())]},
            "spread_tract": {"image": pairwise(ri), "text": pairwise(rt)},
            "tract_load_ms": rust["load_ms"],
            "tract_image_ms_median": encode_ms[len(encode_ms) // 2],
            "embed_run_seconds": round(rust_seconds, 1),
            "onnxruntime_vs_torch": info["onnxruntime_vs_torch"],
            "id": info["id"],
        }
        log(f"   image cos min {v['image_cos']['min']:.6f} mean {v['image_cos']['mean']:.6f}; "
            f"text cos min {v['text_cos']['min']:.6f} mean {v['text_cos']['mean']:.6f} "
            f"({v['text_cos']['prompts']} prompts with identical ids; all prompts: min "
            f"{v['text_cos_all_prompts']['min']:.6f}); "
            f"tract {v['tract_image_ms_median']:.0f} ms/image; image.onnx "
            f"{v['image_onnx_mb']} MB; export {seconds:.0f} s")
        result["variants"][weights] = v

        if pixels_dir is not None:
            # tokenizer: the runtime's padded ids against open_clip's
            ids = np.array([e["ids"] for e in rust["texts"]], np.int64)
            same = (ids == ref["ids"]).all(1)
            result["tokenizer"] = {
                "prompts": len(texts),
                "agreement": float(same.mean()),
                "differ": [{"text": texts[i],
                            "clipsight": [int(x) for x in ids[i] if x],
                            "open_clip": [int(x) for x in ref["ids"][i] if x]}
                           for i in np.flatnonzero(~same)],
            }
            log(f"   tokenizer agreement {same.mean() * 100:.2f}% of {len(texts)}")
            # preprocessing, in normalized units and in u8 levels (|diff| * std * 255):
            #   total:   the runtime's tensor vs open_clip's preprocess of the PIL-decoded photo
            #   decode:  the runtime's decoded RGB (image crate) vs PIL's (exif_transpose, RGB)
            #   resize:  the runtime's tensor vs open_clip's preprocess of the runtime's own
            #            decoded pixels (isolates resize, crop and normalization)
            from PIL import Image, ImageOps
            rows = []
            for k, e in enumerate(rust["images"]):
                mine = np.fromfile(e["pixels"], dtype="<f4").reshape(ref["pixels"][k].shape)
                std = ref["std"][:, None, None]
                d = np.abs(mine - ref["pixels"][k])
                levels = d * std * 255.0
                rgb = np.fromfile(e["decoded"], dtype=np.uint8).reshape(
                    e["height"], e["width"], 3)
                with Image.open(imgs[k]) as im:
                    im.load()
                    pil = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), np.int16)
                dec = np.abs(rgb.astype(np.int16) - pil)
                same_src = ref["preprocess"](Image.fromarray(rgb)).numpy()
                rs = np.abs(mine - same_src) * std * 255.0
                rows.append({"photo": imgs[k].name, "max_abs": float(d.max()),
                             "mean_abs": float(d.mean()), "max_levels": float(levels.max()),
                             "mean_levels": float(levels.mean()),
                             "decode_max_levels": int(dec.max()),
                             "decode_mean_levels": float(dec.mean()),
                             "resize_max_levels": float(rs.max())})
            result["preprocess_diff"] = {
                "photos": rows,
                "max_abs": max(r["max_abs"] for r in rows),
                "mean_abs": float(np.mean([r["mean_abs"] for r in rows])),
                "max_levels": max(r["max_levels"] for r in rows),
                "mean_levels": float(np.mean([r["mean_levels"] for r in rows])),
                "decode_max_levels": max(r["decode_max_levels"] for r in rows),
                "decode_mean_levels": float(np.mean([r["decode_mean_levels"] for r in rows])),
                "resize_max_levels": max(r["resize_max_levels"] for r in rows),
            }
            pd = result["preprocess_diff"]
            log(f"   preprocessing: total max |diff| {pd['max_abs']:.4f} ({pd['max_levels']:.2f} "
                f"u8 levels), mean {pd['mean_abs']:.5f}; JPEG decoding alone max "
                f"{pd['decode_max_levels']} levels; resize+crop+normalize alone max "
                f"{pd['resize_max_levels']:.3f} levels")
    return result


def summary(results: list[dict], skipped: dict, date: str, wall: float) -> str:
    out = [f"Run on {date} with `python models/parity_clip.py` ({wall / 60:.0f} min on this "
           f"machine). Photos: {results[0]['photos']} ({len(results[0]['photo_names'])}); "
           f"prompts: {results[0]['tokenizer']['prompts']}.", ""]
    out += ["### Embeddings (tract through the clipsight runtime vs fp32 PyTorch)", "",
            "Text cosines are over the prompts whose token ids are identical (the tokenizer "
            "section lists the others); the last column is over all prompts.", "",
            "| architecture | weights | image cos min / mean | text cos min / mean | "
            "image.onnx | text.onnx | export | tract image | text cos min, all prompts |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for w, v in r["variants"].items():
            out.append(
                f"| {r['arch']} | {w} | {v['image_cos']['min']:.6f} / "
                f"{v['image_cos']['mean']:.6f} | {v['text_cos']['min']:.6f} / "
                f"{v['text_cos']['mean']:.6f} | {v['image_onnx_mb']} MB | "
                f"{v['text_onnx_mb']} MB | {v['export_seconds']:.0f} s | "
                f"{v['tract_image_ms_median']:.0f} ms | "
                f"{v['text_cos_all_prompts']['min']:.6f} |")
    out += ["", "### Spread (pairwise cosines between different inputs, fp32 PyTorch)", "",
            "| architecture | init | photos min / mean / max | prompts min / mean / max |",
            "|---|---|---|---|"]
    for r in results:
        s = r["spread_torch"]
        init = "; ".join(r["perturbed"]) or "open_clip's random init"
        out.append(f"| {r['arch']} | {init} | {s['image']['min']:.3f} / "
                   f"{s['image']['mean']:.3f} / {s['image']['max']:.3f} | "
                   f"{s['text']['min']:.3f} / {s['text']['mean']:.3f} / "
                   f"{s['text']['max']:.3f} |")
    out += ["", "### Tokenizer (clipsight's padded ids vs open_clip's tokenizer)", ""]
    for r in results:
        t = r["tokenizer"]
        out.append(f"- {r['arch']}: {t['agreement'] * 100:.2f}% of {t['prompts']} prompts "
                   f"identical; {len(t['differ'])} differ"
                   + (":" if t["differ"] else "."))
        for d in t["differ"]:
            out.append(f"  - `{ascii(d['text'])}`: clipsight {d['clipsight'][:12]}…, "
                       f"open_clip {d['open_clip'][:12]}…")
    out += ["", "### Preprocessing (runtime tensor vs open_clip `preprocess`)", "",
            "Total: the runtime's normalized tensor against open_clip's transform of the "
            "PIL-decoded photo. Decoding: the image crate's RGB against PIL's. Resize: the "
            "runtime's tensor against open_clip's transform of the runtime's own decoded "
            "pixels. u8 levels = |diff| × std × 255.", "",
            "| architecture | total max abs | total mean abs | total max (levels) | "
            "total mean (levels) | decoding max / mean (levels) | resize max (levels) |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        p = r["preprocess_diff"]
        out.append(f"| {r['arch']} | {p['max_abs']:.4f} | {p['mean_abs']:.5f} | "
                   f"{p['max_levels']:.2f} | {p['mean_levels']:.4f} | "
                   f"{p['decode_max_levels']} / {p['decode_mean_levels']:.4f} | "
                   f"{p['resize_max_levels']:.4f} |")
        worst = sorted(p["photos"], key=lambda x: -x["max_levels"])[:3]
        out.append("")
        out.append(f"{r['arch']}, largest total differences: " + "; ".join(
            f"{w['photo']} {w['max_levels']:.2f} (decoding {w['decode_max_levels']})"
            for w in worst))
        out.append("")
    if skipped:
        out += ["", "### Not checked", ""]
        out += [f"- {k}: {v}" for k, v in skipped.items()]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", nargs="+", default=list(ARCHS))
    ap.add_argument("--weights", nargs="+", default=["fp32", "fp16", "int8"],
                    choices=["fp32", "fp16", "int8"])
    ap.add_argument("--embed-bin", help="a built examples/embed binary (default: cargo build)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the bundles of an earlier run in models/parity/")
    args = ap.parse_args(argv)
    global REUSE
    REUSE = args.reuse
    t0 = time.time()
    import open_clip

    skipped = {}
    for name, why in (("MobileCLIP-S0", "open_clip 3.3.0 has no such config (its MobileCLIP "
                       "configs: MobileCLIP-S1/S2/B and MobileCLIP2-*); MobileCLIP2-S0 has "
                       "the same image tower (fastvit_mci0)"),
                      ("TinyCLIP", "no TinyCLIP config in open_clip 3.3.0's list_models()")):
        if name == "TinyCLIP":
            if not any("tinyclip" in m.lower() for m in open_clip.list_models()):
                skipped[name] = why
        elif name not in open_clip.list_models():
            skipped[name] = why
    for a in args.archs:
        if a not in ARCHS:
            ARCHS[a] = []
    binary = embed_binary(args)
    imgs, texts = photos(), corpus()
    results = []
    for arch in args.archs:
        r = check_arch(arch, args.weights, binary, imgs, texts)
        r["photos"] = "tests/fixtures/photos/*.jpg and the first " \
            f"{N_CALIBRATION_PHOTOS} of prompts/calibration/*.jpg"
        r["photo_names"] = [p.name for p in imgs]
        results.append(r)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "results.partial.json").write_text(json.dumps(results, indent=1,
                                                             ensure_ascii=False) + "\n")
    wall = time.time() - t0
    date = datetime.date.today().isoformat()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps({"date": date, "results": results,
                                                  "skipped": skipped}, indent=1,
                                                 ensure_ascii=False) + "\n", encoding="utf-8")
    text = summary(results, skipped, date, wall)
    (OUT / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    ok = True
    for r in results:
        fp32 = r["variants"].get("fp32")
        if fp32 and (fp32["image_cos"]["min"] < TARGET_COS or
                     fp32["text_cos"]["min"] < TARGET_COS):
            ok = False
        if r["tokenizer"]["agreement"] < TARGET_TOKENS:
            ok = False
        pd = r["preprocess_diff"]
        # resize, crop and normalization must match exactly (float rounding aside); what is
        # left comes from JPEG decoding, which must stay within a few levels
        if pd["resize_max_levels"] > 0.01:
            ok = False
        if pd["max_levels"] > TARGET_PIXEL_LEVELS + 0.01:
            print(f"note: {r['arch']}: preprocessed tensors differ by up to "
                  f"{pd['max_levels']:.2f} u8 levels (target {TARGET_PIXEL_LEVELS}); JPEG "
                  f"decoding alone differs by up to {pd['decode_max_levels']} levels")
            if pd["max_levels"] > pd["decode_max_levels"] + 0.01:
                ok = False
    print("PASS" if ok else "FAIL: a check missed its target (cosine >= 0.999 for fp32, "
          "tokenizer >= 99.5%, preprocessing exact on the same decoded pixels and within the "
          "JPEG decoders' difference)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
