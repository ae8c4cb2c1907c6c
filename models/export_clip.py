#!/usr/bin/env python3
"""Export an open_clip model (CLIP, OpenCLIP, MobileCLIP, ...) to a clipsight model bundle.

Writes, into --out DIR, the files of the bundle format (README.md, "The model bundle format"):

    image.onnx      pixel_values f32 [1, 3, N, N]     -> image_embeds f32 [1, D]
    text.onnx       input_ids    i64 [batch, 77]      -> text_embeds  f32 [batch, D]
                    (batch is a symbolic dimension; the runtime pins it to text.batch_size)
    tokenizer.json  the model's own CLIP BPE (open_clip's bpe_simple_vocab_16e6.txt.gz) for the
                    HF `tokenizers` crate; padding and truncation are left to the runtime
    model.toml      preprocessing from the model's own config, logit scale, dim, sha256s
    export.json     how the bundle was made (not read by the runtime)

Usage (the packages of models/requirements-clip.txt; see docs/clip.md):

    python models/export_clip.py --model ViT-B-32 --pretrained openai --out models/clip-vit-b32
    python models/export_clip.py --model ViT-B-32 --checkpoint PATH [--pretrained TAG] --out DIR
    python models/export_clip.py --model ViT-B-32 --random-init --out models/clip-vit-b32-random

--pretrained downloads the weights of an open_clip tag (needs a network). --checkpoint loads a
local open_clip/OpenAI checkpoint file; add --pretrained TAG to take that tag's preprocessing and
QuickGELU setting (nothing is downloaded). --random-init builds the same architecture with
seeded random weights (offline; for testing the export path, the runtime and its speed); the
preprocessing is that of --pretrained TAG, or of the model's first pretrained tag.

--weights fp16|int8 stores the image tower's large weight matrices as fp16 (Cast) or as int8
with per-output-channel scales (DequantizeLinear); compute stays fp32 (tract folds the
conversions when it loads the graph). --text-weights does the same for the text tower
(default: fp32; the text tower runs on the host, in `clipsight embed-prompts`).

Every exported graph is checked with onnxruntime against PyTorch before the bundle is written;
models/parity_clip.py checks the bundle in tract, through the clipsight runtime.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import html
import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import make_test_models as mtm  # noqa: E402  (the shared CLIP tokenizer builder)

DEFAULT_OPSET = 17
DEFAULT_TEXT_BATCH = 8
CALIBRATION_DIR = REPO / "prompts" / "calibration"
CORPUS = HERE / "tokenizer_corpus.txt"

# Prompts for the onnxruntime-vs-PyTorch check at the end of the export.
CHECK_PROMPTS = [
    "a photo of a dog.",
    "stairs going down",
    "a person lying on the floor",
    "Ünïcödé café! 2 steps, 3.5 m",
    "a 🐕 and a 🚌 on the street",
    "日本語のテキスト",
    "",
    "a photo of a kitchen with a white refrigerator, a stainless steel oven, a wooden table "
    "with four chairs, a bowl of fruit, a coffee maker, a sink full of dishes and a cat "
    "sleeping on the floor next to the door, seen from the hallway at night",
    "a bus",
]

# HTML entities open_clip's cleaning (ftfy + html.unescape twice) decodes and that the
# tokenizer.json normalizer decodes too. A normalizer can only replace fixed strings, so this
# is a list of common ones; the replacement text is Python's own html.unescape().
HTML_ENTITIES = [
    "&lt;", "&gt;", "&quot;", "&apos;", "&#39;", "&#x27;", "&#34;", "&#x22;", "&#38;",
    "&#x26;", "&#60;", "&#62;", "&nbsp;", "&#160;", "&copy;", "&reg;", "&trade;", "&hellip;",
    "&mdash;", "&ndash;", "&lsquo;", "&rsquo;", "&ldquo;", "&rdquo;", "&laquo;", "&raquo;",
    "&deg;", "&middot;", "&bull;", "&times;", "&divide;", "&plusmn;", "&euro;", "&pound;",
    "&yen;", "&cent;", "&sect;", "&para;", "&frac12;", "&frac14;", "&frac34;", "&eacute;",
    "&egrave;", "&ecirc;", "&euml;", "&aacute;", "&agrave;", "&acirc;", "&auml;", "&aring;",
    "&iacute;", "&igrave;", "&icirc;", "&iuml;", "&oacute;", "&ograve;", "&ocirc;", "&ouml;",
    "&oslash;", "&uacute;", "&ugrave;", "&ucirc;", "&uuml;", "&ntilde;", "&ccedil;", "&szlig;",
    "&aelig;", "&Eacute;", "&Agrave;", "&Auml;", "&Ouml;", "&Uuml;", "&Ccedil;", "&Ntilde;",
]


def log(msg: str) -> None:
    print(msg, flush=True)


class Steps:
    """Numbered progress lines with the time each step took."""

    def __init__(self, total: int):
        self.total, self.n, self.t0, self.t = total, 0, time.time(), None
        self.times: dict[str, float] = {}
        self.name = None

    def __call__(self, name: str) -> None:
        self.end()
        self.n += 1
        self.name, self.t = name, time.time()
        log(f"[{self.n}/{self.total}] {name} ...")

    def end(self) -> None:
        if self.name is not None:
            dt = time.time() - self.t
            self.times[self.name] = round(dt, 1)
            log(f"      done in {dt:.1f} s")
            self.name = None


def sha256_file(path: Path) -> str:
    return mtm.sha256_file(path)


# --------------------------------------------------------------------------------------------
# The PyTorch model
# --------------------------------------------------------------------------------------------


def first_tag(model_name: str) -> str | None:
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(model_name)
    return tags[0] if tags else None


def preprocess_from_tag(model_name: str, tag: str | None) -> dict:
    """open_clip's final preprocessing config for (model, tag), without downloading."""
    import open_clip
    from open_clip.factory import merge_preprocess_dict
    from open_clip.transform import PreprocessCfg
    from dataclasses import asdict

    cfg = asdict(PreprocessCfg())
    model_cfg = open_clip.get_model_config(model_name) or {}
    size = model_cfg.get("vision_cfg", {}).get("image_size")
    if size is not None:
        cfg["size"] = size
    if tag:
        pcfg = open_clip.get_pretrained_cfg(model_name, tag)
        if not pcfg:
            raise SystemExit(f"error: {model_name} has no pretrained tag {tag!r}; tags: "
                             f"{open_clip.list_pretrained_tags_by_model(model_name)}")
        cfg = merge_preprocess_dict(cfg, pcfg)
    return cfg


def build_model(model_name: str, pretrained: str | None, checkpoint: str | None,
                random_init: bool, seed: int):
    """Returns (model in eval mode, info dict). Nothing is downloaded unless `pretrained` is
    given without `checkpoint` or `random_init`."""
    import open_clip
    import torch

    if model_name not in open_clip.list_models():
        raise SystemExit(f"error: unknown open_clip model {model_name!r} (see "
                         "open_clip.list_models())")
    tag = pretrained
    if random_init and tag is None:
        tag = first_tag(model_name)
    tag_cfg = open_clip.get_pretrained_cfg(model_name, tag) if tag else {}
    if tag and not tag_cfg:
        raise SystemExit(f"error: {model_name} has no pretrained tag {tag!r}; tags: "
                         f"{open_clip.list_pretrained_tags_by_model(model_name)}")
    # Weights trained with QuickGELU (OpenAI's, some LAION-400M ones) need it in the graph too;
    # open_clip only warns when the model config and the tag disagree.
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    model_cfg = open_clip.get_model_config(model_name) or {}
    force_quick_gelu = quick_gelu and not model_cfg.get("quick_gelu", False)

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if random_init or checkpoint:
            model = open_clip.create_model(model_name, pretrained=checkpoint,
                                           force_quick_gelu=force_quick_gelu,
                                           pretrained_image=False, pretrained_text=False)
            pcfg = preprocess_from_tag(model_name, tag)
        else:
            model = open_clip.create_model(model_name, pretrained=pretrained,
                                           force_quick_gelu=force_quick_gelu)
            pcfg = dict(model.visual.preprocess_cfg)
    model.eval()
    if random_init:
        source = f"random init (seed {seed}), architecture and preprocessing of tag {tag!r}"
    elif checkpoint:
        source = f"checkpoint {Path(checkpoint).name}"
        if tag:
            source += f", preprocessing of tag {tag!r}"
    else:
        source = f"pretrained tag {pretrained!r}"
    info = {
        "model": model_name,
        "tag": tag,
        "source": source,
        "quick_gelu": quick_gelu or bool(model_cfg.get("quick_gelu", False)),
        "preprocess": {k: (list(v) if isinstance(v, tuple) else v) for k, v in pcfg.items()},
        "open_clip": open_clip.__version__,
        "torch": torch.__version__,
    }
    return model, info


def text_tower(model):
    """(module holding ln_final/token_embedding, pool type, eos id, causal?)"""
    if hasattr(model, "text") and hasattr(model.text, "ln_final"):
        t = model.text
        return t, t.pool_type, getattr(t, "eos_id", None), t.attn_mask is not None
    if hasattr(model, "ln_final"):
        return model, model.text_pool_type, getattr(model, "text_eos_id", None), \
            model.attn_mask is not None
    raise SystemExit("error: unsupported text tower (an HF text model?): only open_clip's "
                     "own text transformer with the CLIP tokenizer is supported")


def load_photos(paths, preprocess):
    import torch
    from PIL import Image, ImageOps

    batch = []
    for p in paths:
        with Image.open(p) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
        batch.append(preprocess(im))
    return torch.stack(batch)


def perturb_init(model, preprocess, calib_photos: list[Path], prompts: list[str], tokenizer):
    """Makes a random-init model's embeddings differ across inputs, so that parity checks
    mean something. Returns a list of what was done.

    1. LayerScale gammas (initialised to 1e-5 in timm/open_clip, which switches residual
       branches off) are set to 1, so every branch contributes.
    2. BatchNorm running statistics are re-estimated on the calibration photos (a random
       network's default mean 0 / var 1 makes every image look alike after pooling).
    3. The text tower's final LayerNorm bias is set so that the pooled features of the prompts
       have zero mean (with a bidirectional text tower, as in MobileCLIP, all prompts otherwise
       map to nearly the same direction).
    """
    import torch

    done = []
    with torch.no_grad():
        n = 0
        for name, p in model.named_parameters():
            if name.endswith("gamma") and ("layer_scale" in name or ".ls_" in name or
                                           name.split(".")[-2].startswith("ls")):
                p.fill_(1.0)
                n += 1
        if n:
            done.append(f"{n} LayerScale gammas set to 1")

        bns = [m for m in model.visual.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if bns:
            for m in bns:
                m.reset_running_stats()
                m.momentum = None  # cumulative average
            x = load_photos(calib_photos, preprocess)
            model.visual.train()
            for i in range(0, len(x), 16):
                model.visual(x[i:i + 16])
            model.visual.eval()
            done.append(f"running statistics of {len(bns)} BatchNorm layers re-estimated on "
                        f"{len(calib_photos)} calibration photos")

        tower, pool, eos, _ = text_tower(model)
        captured = {}
        hook = tower.ln_final.register_forward_hook(
            lambda mod, inp, out: captured.__setitem__("x", inp[0]))
        ids = tokenizer(prompts)
        model.encode_text(ids)
        hook.remove()
        x = captured["x"]
        if pool == "argmax":
            x = x[torch.arange(x.shape[0]), ids.argmax(-1)]
        elif pool == "first":
            x = x[:, 0]
        elif pool == "last":
            x = x[:, -1]
        else:
            x = None
        if x is not None:
            ln = tower.ln_final
            xn = torch.nn.functional.layer_norm(x, x.shape[-1:], eps=ln.eps)
            ln.bias.copy_(-(ln.weight * xn).mean(0))
            done.append(f"text ln_final bias centred on {len(prompts)} prompts")
    return done


def reparameterize(model) -> bool:
    """Folds MobileOne/RepMixer branches (MobileCLIP, FastViT) for inference."""
    try:
        from timm.utils.model import reparameterize_model
    except ImportError:
        return False
    has = any(hasattr(m, "reparameterize") for m in model.visual.modules())
    if has:
        model.visual = reparameterize_model(model.visual, inplace=True)
    return has


# --------------------------------------------------------------------------------------------
# ONNX export
# --------------------------------------------------------------------------------------------


def _wrappers():
    import torch

    class Image(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model.encode_image(pixel_values)

    class Text(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids):
            return self.model.encode_text(input_ids)

    return Image, Text


def torch_export(module, args, path: Path, input_name: str, output_name: str, opset: int,
                 dynamic_batch: bool) -> str:
    """torch.onnx.export with the dynamo exporter, falling back to the TorchScript one.
    Returns which exporter worked."""
    import torch

    errors = []
    try:
        kw = {}
        if dynamic_batch:
            kw["dynamic_shapes"] = {input_name: {0: torch.export.Dim("batch", min=1, max=1024)}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the dynamo exporter's native opset is 18; finish_graph converts it down after
            # constant folding (converting before folding fails on some graphs)
            prog = torch.onnx.export(module, args, dynamo=True, opset_version=max(opset, 18),
                                     input_names=[input_name], output_names=[output_name],
                                     verbose=False, **kw)
        prog.save(str(path), external_data=True)
        return "dynamo"
    except Exception as e:  # noqa: BLE001 - report and try the other exporter
        errors.append(f"dynamo: {type(e).__name__}: {str(e)[:300]}")
    try:
        axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset,
                              input_names=[input_name], output_names=[output_name],
                              dynamic_axes=axes, do_constant_folding=True)
        return "torchscript"
    except Exception as e:  # noqa: BLE001
        errors.append(f"torchscript: {type(e).__name__}: {str(e)[:300]}")
    raise SystemExit("error: ONNX export failed:\n  " + "\n  ".join(errors))


def ort_fold(src: Path, dst: Path) -> None:
    """onnxruntime's basic (standard-op) graph optimizations: constant folding and redundant
    node elimination. Turns shape arithmetic into constants, which tract's analysis needs."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])


def finish_graph(raw: Path, out: Path, weights: str, doc: str, tmp: Path, opset: int) -> dict:
    """Folds constants, converts to `opset`, compresses weights if asked, and writes one
    self-contained ONNX file. Returns statistics."""
    import onnx
    from onnx import version_converter

    folded = tmp / (out.stem + ".folded.onnx")
    ort_fold(raw, folded)
    m = onnx.load(str(folded))
    have = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    if have != opset:
        m = version_converter.convert_version(m, opset)
    # Intermediate shape annotations would carry the symbolic batch into tract's analysis,
    # where it clashes with the pinned batch size; tract and onnxruntime infer shapes anyway.
    del m.graph.value_info[:]
    for o in m.graph.output:
        for d in o.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                d.ClearField("dim_param")
    m.doc_string = doc
    m.producer_name = "clipsight/models/export_clip.py"
    del m.metadata_props[:]
    stats = compress_weights(m, weights)
    onnx.checker.check_model(m)
    data = m.SerializeToString(deterministic=True)
    if len(data) >= 2**31 - 1:
        raise SystemExit(f"error: {out.name} is over the 2 GB protobuf limit; external data "
                         "is not supported by this exporter")
    out.write_bytes(data)
    onnx.checker.check_model(str(out), full_check=True)
    ops: dict[str, int] = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    stats["ops"] = dict(sorted(ops.items(), key=lambda kv: -kv[1]))
    stats["bytes"] = out.stat().st_size
    stats["opset"] = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    return stats


# Weights smaller than this stay fp32 (biases, LayerNorm parameters, class tokens).
MIN_COMPRESS_ELEMENTS = 16384


# tract (0.23) folds a constant computation at load only if its result is no larger than its
# inputs or than 4 MiB (tract-core's CONST_FOLD_MEM_BUDGET); a bigger Cast/DequantizeLinear of a
# weight would be recomputed on every run (measured: 2.4x slower for ViT-B/32). So each
# converted weight is split along axis 0 into chunks of at most this many elements (4 MB as
# fp32), converted chunk by chunk, and joined by a Concat, which tract folds too.
FOLD_CHUNK_ELEMENTS = 1_000_000


def compress_weights(m, mode: str) -> dict:
    """Stores large float initializers as fp16 (+ Cast) or int8 (+ DequantizeLinear with one
    symmetric scale per output channel). Compute stays fp32: the conversion nodes only read
    initializers, and are chunked so that tract folds them into fp32 constants at load."""
    from onnx import TensorProto, helper, numpy_helper

    stats = {"weights": mode, "compressed": 0, "compressed_elements": 0, "kept_fp32": 0}
    if mode == "fp32":
        return stats
    consumers: dict[str, list] = {}
    for node in m.graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, i))
    graph_inputs = {i.name for i in m.graph.input}
    new_inits, new_nodes = [], []
    for init in list(m.graph.initializer):
        if init.data_type != TensorProto.FLOAT or init.name in graph_inputs:
            continue
        w = numpy_helper.to_array(init)
        if w.size < MIN_COMPRESS_ELEMENTS or w.ndim == 0:
            stats["kept_fp32"] += 1
            continue
        name = init.name
        if mode == "fp16":
            stored = w.astype(np.float16)
            axis, scale = None, None
        else:
            axis = int8_axis(w, consumers.get(name, []))
            if axis is None:
                stats["kept_fp32"] += 1
                continue
            red = tuple(d for d in range(w.ndim) if d != axis)
            amax = np.abs(w).max(axis=red)
            scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
            shape = [1] * w.ndim
            shape[axis] = -1
            stored = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        row = int(np.prod(w.shape[1:], dtype=np.int64))
        rows = max(1, FOLD_CHUNK_ELEMENTS // max(row, 1))
        starts = list(range(0, w.shape[0], rows))
        parts = []
        for k, s0 in enumerate(starts):
            part = name if len(starts) == 1 else f"{name}_part{k}"
            chunk = np.ascontiguousarray(stored[s0:s0 + rows])
            if mode == "fp16":
                q = numpy_helper.from_array(chunk, f"{name}_fp16_{k}")
                new_nodes.append(helper.make_node("Cast", [q.name], [part], to=TensorProto.FLOAT,
                                                  name=f"{name}_cast_{k}"))
            else:
                q = numpy_helper.from_array(chunk, f"{name}_int8_{k}")
                sc = scale[s0:s0 + rows] if axis == 0 else scale
                s = numpy_helper.from_array(np.ascontiguousarray(sc), f"{name}_scale_{k}")
                z = numpy_helper.from_array(np.zeros(sc.shape, np.int8), f"{name}_zp_{k}")
                new_inits += [s, z]
                new_nodes.append(helper.make_node("DequantizeLinear", [q.name, s.name, z.name],
                                                  [part], axis=axis, name=f"{name}_dequant_{k}"))
            new_inits.append(q)
            parts.append(part)
        if len(parts) > 1:
            new_nodes.append(helper.make_node("Concat", parts, [name], axis=0,
                                              name=f"{name}_concat"))
        m.graph.initializer.remove(init)
        stats["compressed"] += 1
        stats["compressed_elements"] += int(w.size)
    m.graph.initializer.extend(new_inits)
    # the conversion nodes go first: they only read initializers (topological order holds)
    nodes = new_nodes + list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return stats


def int8_axis(w: np.ndarray, uses) -> int | None:
    """The output-channel axis of a weight for per-channel int8, from how it is used."""
    axes = set()
    for node, i in uses:
        if node.op_type == "MatMul" and i == 1 and w.ndim == 2:
            axes.add(1)  # x @ W, W [in, out]
        elif node.op_type == "Gemm" and i == 1 and w.ndim == 2:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axes.add(0 if trans_b else 1)
        elif node.op_type in ("Conv", "ConvTranspose") and i == 1:
            axes.add(0 if node.op_type == "Conv" else 1)
        elif node.op_type == "Gather" and i == 0 and w.ndim == 2:
            axes.add(0)  # embedding table: one scale per row
        else:
            return None
    return axes.pop() if len(axes) == 1 else None


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def build_clip_tokenizer(oc_tokenizer):
    """tokenizer.json for the model's own tokenizer (open_clip's SimpleTokenizer): the CLIP BPE
    built by make_test_models.build_tokenizer from the vocabulary file the tokenizer itself
    reads, with its special-token names, and a normalizer that imitates its text cleaning
    (ftfy.fix_text, html.unescape twice, whitespace collapse, lower case) as far as fixed
    replacements can."""
    from open_clip.tokenizer import SimpleTokenizer, default_bpe
    from tokenizers import Regex, Tokenizer, normalizers

    if not isinstance(oc_tokenizer, SimpleTokenizer):
        raise SystemExit(f"error: the model's tokenizer is {type(oc_tokenizer).__name__}; only "
                         "open_clip's CLIP BPE SimpleTokenizer is supported")
    if oc_tokenizer.reduction_fn is not None:
        raise SystemExit("error: the model's tokenizer uses a reduction mask; unsupported")
    tk = mtm.build_tokenizer(default_bpe())
    sot = oc_tokenizer.decoder[oc_tokenizer.sot_token_id]
    eot = oc_tokenizer.decoder[oc_tokenizer.eot_token_id]
    assert (oc_tokenizer.sot_token_id, oc_tokenizer.eot_token_id) == (mtm.SOT_ID, mtm.EOT_ID)

    spec = json.loads(tk.to_str())
    rename = {mtm.SOT: sot, mtm.EOT: eot}

    def walk(x):
        if isinstance(x, dict):
            return {rename.get(k, k): walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, str):
            return rename.get(x, x)
        return x

    spec = walk(spec)
    prefix = r"<\|startoftext\|>|<\|endoftext\|>|"
    assert mtm.CLIP_SPLIT.startswith(prefix)
    split = "|".join(re.escape(s) for s in (sot, eot)) + "|" + mtm.CLIP_SPLIT[len(prefix):]
    pre = spec["pre_tokenizer"]["pretokenizers"][0]
    assert pre["type"] == "Split" and pre["pattern"] == {"Regex": mtm.CLIP_SPLIT}
    pre["pattern"] = {"Regex": split}
    tk = Tokenizer.from_str(json.dumps(spec))

    # The vocabulary must be the tokenizer's own, id for id.
    vocab = tk.get_vocab()
    assert vocab == oc_tokenizer.encoder, "tokenizer.json vocabulary differs from open_clip's"

    from ftfy import chardata

    rules = [normalizers.Replace("&amp;", "&"), normalizers.Replace("&amp;", "&")]
    for ent in HTML_ENTITIES:
        rules.append(normalizers.Replace(ent, html.unescape(ent)))
    # ftfy.remove_terminal_escapes (ANSI colour codes), then ftfy.remove_control_chars
    rules.append(normalizers.Replace(Regex(r"\x{1b}\[(?:\d|;)*[a-zA-Z]"), ""))
    control = "".join(f"\\x{{{c:x}}}" for c in sorted(chardata.CONTROL_CHARS))
    rules.append(normalizers.Replace(Regex(f"[{control}]"), ""))
    for table in (chardata.LIGATURES, chardata.WIDTH_MAP):
        for c, s in sorted(table.items()):
            rules.append(normalizers.Replace(chr(c), s))
    rules.append(normalizers.Replace(Regex(chardata.SINGLE_QUOTE_RE.pattern), "'"))
    rules.append(normalizers.Replace(Regex(chardata.DOUBLE_QUOTE_RE.pattern), '"'))
    rules.append(normalizers.NFC())
    # Python's str.lower() writes a word-final capital sigma as ς; the Lowercase normalizer
    # maps every Σ to σ.
    rules.append(normalizers.Replace(Regex(r"(?<=\p{L})Σ(?!\p{L})"), "ς"))
    rules.append(normalizers.Replace(Regex(r"\s+"), " "))
    rules.append(normalizers.Lowercase())
    tk.normalizer = normalizers.Sequence(rules)
    return tk


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def write_manifest(out: Path, model_id: str, description: str, size: int, resize: str,
                   interpolation: str, mean, std, batch: int, pooling: str, ctx: int, dim: int,
                   logit_scale: float) -> None:
    text = f"""\
format = 1
id = {toml_str(model_id)}
description = {toml_str(description)}

[image]
file = "image.onnx"
sha256 = "{sha256_file(out / 'image.onnx')}"
input = "pixel_values"
output = "image_embeds"
size = {size}
resize = "{resize}"
interpolation = "{interpolation}"
mean = {mtm.fmt_list(mean)}
std = {mtm.fmt_list(std)}

[text]
file = "text.onnx"
sha256 = "{sha256_file(out / 'text.onnx')}"
input_ids = "input_ids"
output = "text_embeds"
batch_size = {batch}
pooling = "{pooling}"

[tokenizer]
file = "tokenizer.json"
sha256 = "{sha256_file(out / 'tokenizer.json')}"
context_length = {ctx}
pad_id = 0

[embedding]
dim = {dim}
logit_scale = {float(logit_scale)!r}
"""
    (out / "model.toml").write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Export an open_clip model to a clipsight bundle.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
               "  export_clip.py --model ViT-B-32 --pretrained openai --out models/clip-vit-b32\n"
               "  export_clip.py --model ViT-B-32 --random-init --out models/clip-vit-b32-random")
    ap.add_argument("--model", required=True, help="open_clip model name, e.g. ViT-B-32")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="local checkpoint file (open_clip or OpenAI format)")
    src.add_argument("--random-init", action="store_true",
                     help="seeded random weights (offline; for tests and speed)")
    ap.add_argument("--pretrained", help="open_clip pretrained tag, e.g. openai (downloads the "
                    "weights unless --checkpoint or --random-init: then only its preprocessing "
                    "and QuickGELU setting are used)")
    ap.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    ap.add_argument("--weights", choices=["fp32", "fp16", "int8"], default="fp32",
                    help="storage of the image tower's weights (compute is fp32)")
    ap.add_argument("--text-weights", choices=["fp32", "fp16", "int8"], default="fp32",
                    help="storage of the text tower's weights")
    ap.add_argument("--quantize", action="store_true",
                    help="run the image tower through models/quantize (int8 compute). Off by "
                    "default: on this export of ViT-B-32 tract ran it slower than fp32 (258 vs "
                    "140 ms, cosine 0.9998; models/README.md); with --backend ort it pays off")
    ap.add_argument("--text-batch", type=int, default=DEFAULT_TEXT_BATCH,
                    help="model.toml text.batch_size (the graph's batch is symbolic)")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET, choices=[14, 17])
    ap.add_argument("--seed", type=int, default=0, help="seed for --random-init")
    ap.add_argument("--perturb-init", action="store_true",
                    help="with --random-init: LayerScale gammas to 1, BatchNorm statistics from "
                    "the calibration photos, text ln_final bias centred, so that embeddings "
                    "differ across inputs (for parity checks)")
    ap.add_argument("--calibration", type=Path, default=CALIBRATION_DIR,
                    help="photos for --perturb-init (default prompts/calibration)")
    ap.add_argument("--id", dest="model_id", help="model id (default derived from the source)")
    ap.add_argument("--save-torch", type=Path,
                    help="also save the exported PyTorch state dict here (for parity checks)")
    args = ap.parse_args(argv)
    if not args.random_init and not args.checkpoint and not args.pretrained:
        ap.error("give --pretrained TAG, --checkpoint PATH or --random-init")
    if args.perturb_init and not args.random_init:
        ap.error("--perturb-init only applies to --random-init")
    if not 1 <= args.text_batch <= 1024:
        ap.error("--text-batch: 1..=1024")
    return args


def default_id(args, info) -> str:
    base = f"openclip-{args.model}"
    if args.random_init:
        name = f"{base}-randominit" + ("-perturbed" if args.perturb_init else "")
        if args.seed:
            name += f"-seed{args.seed}"
    elif args.checkpoint:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(args.checkpoint).stem)
        name = f"{base}-{stem}"
    else:
        name = f"{base}-{args.pretrained}"
    for tower, w in (("image", args.weights), ("text", args.text_weights)):
        if w != "fp32":
            name += f"-{tower}{w}"
    if args.quantize:
        name += "-int8"
    return name


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import open_clip

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    steps = Steps(8)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    steps(f"building {args.model} ({'random init' if args.random_init else 'loading weights'})")
    model, info = build_model(args.model, args.pretrained, args.checkpoint, args.random_init,
                              args.seed)
    pcfg = info["preprocess"]
    size = pcfg["size"]
    if isinstance(size, (list, tuple)):
        if size[0] != size[-1]:
            raise SystemExit(f"error: non-square input {size} is not supported")
        size = size[0]
    resize = {"shortest": "shortest", "squash": "squash"}.get(pcfg["resize_mode"])
    if resize is None:
        raise SystemExit(f"error: resize_mode {pcfg['resize_mode']!r} (letterboxing) is not "
                         "supported by clipsight's preprocessing")
    interpolation = pcfg["interpolation"]
    if interpolation not in ("bicubic", "bilinear"):
        raise SystemExit(f"error: interpolation {interpolation!r} is not supported")
    oc_tok = open_clip.get_tokenizer(args.model)
    ctx = oc_tok.context_length
    tower, pool, eos_id, causal = text_tower(model)
    pooling = {"argmax": "eot", "eos": "eot", "first": "cls"}.get(pool)
    if pooling is None:
        raise SystemExit(f"error: text pool type {pool!r} has no manifest equivalent")
    if pool == "eos" and eos_id != oc_tok.eot_token_id:
        raise SystemExit(f"error: text eos_id {eos_id} is not the tokenizer's end-of-text")
    preprocess = open_clip.image_transform(
        size, is_train=False, mean=pcfg["mean"], std=pcfg["std"], resize_mode=resize,
        interpolation=interpolation)
    info["text"] = {"pool_type": pool, "causal_mask": causal, "context_length": ctx}
    log(f"      {info['source']}; text pooling {pool} ({'causal' if causal else 'bidirectional'}"
        f"), input {size}x{size} {resize} {interpolation}, mean {pcfg['mean']} std "
        f"{pcfg['std']}")

    corpus = [line for line in CORPUS.read_text(encoding="utf-8").split("\n")
              if line and not line.startswith("# ")] if CORPUS.exists() else CHECK_PROMPTS
    calib = sorted(args.calibration.glob("*.jpg")) if args.calibration.is_dir() else []
    if args.perturb_init:
        if not calib:
            raise SystemExit(f"error: --perturb-init needs photos in {args.calibration}")
        done = perturb_init(model, preprocess, calib[:64], corpus[:128], oc_tok)
        info["perturbed"] = done
        for d in done:
            log(f"      perturbed: {d}")
    if args.save_torch:
        args.save_torch.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.save_torch)
    # The reference for the onnxruntime check is the model as built (before any folding).
    ref_model = model
    if any(hasattr(m, "reparameterize") for m in model.visual.modules()):
        ref_model = copy.deepcopy(model)
        reparameterize(model)
        log("      reparameterized the image tower's MobileOne/RepMixer branches")
        info["reparameterized"] = True
    logit_scale = float(model.logit_scale.exp().item())

    # reference inputs for the onnxruntime check
    photos = sorted((REPO / "tests" / "fixtures" / "photos").glob("*.jpg"))[:4] or calib[:4]
    if photos:
        check_x = load_photos(photos, preprocess)
    else:
        check_x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    check_ids = oc_tok(CHECK_PROMPTS)
    with torch.no_grad():
        ref_img = ref_model.encode_image(check_x).numpy()
        ref_txt = ref_model.encode_text(check_ids).numpy()
    dim = ref_img.shape[1]
    assert ref_txt.shape[1] == dim

    Image, Text = _wrappers()
    with tempfile.TemporaryDirectory(prefix="export_clip_") as tmpd:
        tmp = Path(tmpd)
        steps("exporting the image tower to ONNX")
        how_i = torch_export(Image(model).eval(), (check_x[:1],), tmp / "image.raw.onnx",
                             "pixel_values", "image_embeds", args.opset, dynamic_batch=False)
        log(f"      exporter: {how_i}")
        steps("exporting the text tower to ONNX")
        how_t = torch_export(Text(model).eval(), (check_ids[:2],), tmp / "text.raw.onnx",
                             "input_ids", "text_embeds", args.opset, dynamic_batch=True)
        log(f"      exporter: {how_t}")
        steps(f"folding constants, weights image {args.weights} / text {args.text_weights}")
        model_id = args.model_id or default_id(args, info)
        doc = f"clipsight bundle {model_id}: open_clip {args.model}, {info['source']}"
        gi = finish_graph(tmp / "image.raw.onnx", out / "image.onnx", args.weights,
                          doc + "; image tower", tmp, args.opset)
        gt = finish_graph(tmp / "text.raw.onnx", out / "text.onnx", args.text_weights,
                          doc + "; text tower", tmp, args.opset)
        if args.quantize:
            import quantize
            log("      quantizing the image tower with models/quantize (int8 compute)")
            if quantize.main([str(out / "image.onnx"), str(tmp / "image.int8.onnx")]) != 0:
                raise SystemExit("error: models/quantize failed")
            os.replace(tmp / "image.int8.onnx", out / "image.onnx")
            gi["bytes"] = (out / "image.onnx").stat().st_size
            gi["quantized"] = "models/quantize dynamic int8"
        for name, g in (("image.onnx", gi), ("text.onnx", gt)):
            log(f"      {name}: {g['bytes'] / 1e6:.1f} MB, opset {g['opset']}, {g['weights']} "
                f"weights ({g['compressed']} tensors converted), ops {g['ops']}")

    steps("building tokenizer.json")
    tk = build_clip_tokenizer(oc_tok)
    (out / "tokenizer.json").write_text(tk.to_str(pretty=False), encoding="utf-8")
    from tokenizers import Tokenizer
    hf = Tokenizer.from_file(str(out / "tokenizer.json"))
    hf.enable_truncation(ctx)
    mine = np.zeros((len(corpus), ctx), np.int64)
    for i, t in enumerate(corpus):
        ids = hf.encode(t).ids
        mine[i, :len(ids)] = ids
    agree = float((mine == oc_tok(corpus).numpy()).all(1).mean())
    log(f"      token ids equal to open_clip's on {agree * 100:.1f}% of {len(corpus)} prompts")

    steps("checking the ONNX graphs with onnxruntime against PyTorch")
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    si = ort.InferenceSession(str(out / "image.onnx"), so, providers=["CPUExecutionProvider"])
    st = ort.InferenceSession(str(out / "text.onnx"), so, providers=["CPUExecutionProvider"])
    got_i = np.concatenate([si.run(None, {"pixel_values": check_x[i:i + 1].numpy()})[0]
                            for i in range(len(check_x))])
    b = args.text_batch
    ids = check_ids.numpy()
    got_t = []
    for s in range(0, len(ids), b):
        got_t.append(st.run(None, {"input_ids": ids[s:s + b]})[0])
    got_t = np.concatenate(got_t)
    ci, ct = cos_rows(got_i, ref_img), cos_rows(got_t, ref_txt)
    log(f"      image cosine min {ci.min():.6f} ({len(ci)} photos), text cosine min "
        f"{ct.min():.6f} ({len(ct)} prompts)")
    floor = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.99}
    image_floor = 0.99 if args.quantize else floor[args.weights]
    if ci.min() < image_floor or ct.min() < floor[args.text_weights]:
        raise SystemExit("error: the exported graphs do not match PyTorch")

    steps("writing model.toml")
    compute = "image int8 compute (models/quantize)" if args.quantize else "fp32 compute"
    description = (f"open_clip {args.model}: {info['source']}. Image weights {args.weights}, "
                   f"text weights {args.text_weights} ({compute}). Exported by "
                   f"models/export_clip.py with open_clip {info['open_clip']}, "
                   f"torch {info['torch']}.")
    if args.random_init:
        description += " Random weights: for tests and benchmarks only, outputs mean nothing."
    write_manifest(out, model_id, description, size, resize, interpolation, pcfg["mean"],
                   pcfg["std"], args.text_batch, pooling, ctx, dim, logit_scale)

    steps("writing export.json")
    steps.end()
    info.update({
        "id": model_id,
        "command": "python models/export_clip.py " + " ".join(sys.argv[1:] if argv is None
                                                               else argv),
        "date": datetime.date.today().isoformat(),
        "exporter": {"image": how_i, "text": how_t},
        "image_onnx": gi,
        "text_onnx": gt,
        "onnxruntime_vs_torch": {"image_cos_min": float(ci.min()),
                                 "text_cos_min": float(ct.min())},
        "tokenizer_agreement": agree,
        "logit_scale": logit_scale,
        "dim": dim,
        "seconds": steps.times,
    })
    (out / "export.json").write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    total = time.time() - steps.t0
    log(f"wrote {out}/ ({model_id}) in {total:.0f} s:")
    for f in ("model.toml", "image.onnx", "text.onnx", "tokenizer.json", "export.json"):
        log(f"  {f}: {(out / f).stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
