#!/usr/bin/env python3
"""Turn an fp32 image encoder (ONNX) into the int8 form clipsight runs fastest.

Usage (from the repository root, with the packages of models/requirements-quantize.txt):

    models/quantize IN.onnx OUT.onnx                      # dynamic (default): no calibration
    models/quantize IN.onnx OUT.onnx --mode static \\
        --calibration prompts/calibration [--bundle models/default]

The form (see docs/speed.md for why): every MatMul and Conv whose weight is a constant becomes

    x_q = int8(round(x / s_x))                      activations, symmetric, per tensor
    y   = float(MatMulInteger(x_q, W_q)) * (s_x * s_w) [+ bias]

with W_q symmetric int8 per output channel (zero points 0, range [-127, 127]) and s_x either
computed in the graph from max|x| of each frame (`--mode dynamic`, no calibration) or fixed from
real photos (`--mode static`). Both runtimes clipsight supports read it: tract lowers each
MatMulInteger to its own int8 matrix kernels (`OptMatMul`; see examples/tract_probe.rs), and
onnxruntime runs it with its int8 kernels too. onnxruntime's own `quantize_dynamic`
output does not suit tract: its asymmetric uint8 activations carry a zero point computed at run
time, which tract cannot fold into its kernels, so every such MatMulInteger runs in tract's
generic (reference) einsum.

Weights that come from `DequantizeLinear` of constants (int8-stored bundles such as
models/default) are read back as f32 and requantized per output channel. Attention products
(both operands computed) stay f32. Everything is deterministic: the same input and options
give the same bytes.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
QMAX = 127.0
# Weights smaller than this stay f32: the int8 kernels only pay off on real matrices.
MIN_WEIGHT_ELEMS = 4096
# Activations are uint8 with this constant zero point: symmetric in effect (round(x / s) in
# [-127, 127] shifted by 128). A constant zero point is what both runtimes fold into their int8
# kernels; uint8 x int8 is onnxruntime's fast combination (its int8 x int8 MatMulInteger is
# ~8x slower on x86).
ZERO_POINT = 128
# A floor for max|x| so an all-zero activation does not divide by zero.
TINY = 1e-12


def opset_of(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return 1


class Consts:
    """Constant tensors of a graph: initializers, Constant nodes, DequantizeLinear of consts."""

    def __init__(self, graph: onnx.GraphProto):
        self.values: dict[str, np.ndarray] = {
            i.name: numpy_helper.to_array(i) for i in graph.initializer
        }
        for node in graph.node:
            if node.op_type == "Constant" and len(node.attribute) == 1:
                a = node.attribute[0]
                if a.name == "value":
                    self.values[node.output[0]] = numpy_helper.to_array(a.t)
            elif node.op_type == "DequantizeLinear" and all(
                i in self.values for i in node.input if i
            ):
                self.values[node.output[0]] = dequantize(node, self.values)

    def get(self, name: str) -> np.ndarray | None:
        return self.values.get(name)


def dequantize(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> np.ndarray:
    x = values[node.input[0]].astype(np.float32)
    scale = values[node.input[1]].astype(np.float32)
    zp = (
        values[node.input[2]].astype(np.float32)
        if len(node.input) > 2 and node.input[2]
        else np.zeros_like(scale)
    )
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * x.ndim
        shape[axis] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((x - zp) * scale).astype(np.float32)


def quantize_weight(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per channel along `axis`: returns (int8 weight, f32 scale per channel)."""
    reduce = tuple(a for a in range(w.ndim) if a != axis)
    amax = np.abs(w).max(axis=reduce)
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -QMAX, QMAX).astype(np.int8)
    return q, scale


class Rewriter:
    def __init__(self, model: onnx.ModelProto, mode: str, act_scales: dict[str, float]):
        self.model = model
        self.graph = model.graph
        self.opset = opset_of(model)
        self.mode = mode
        self.act_scales = act_scales
        self.consts = Consts(self.graph)
        self.new_inits: list[onnx.TensorProto] = []
        self.count = 0
        # One quantized copy per activation, shared by every consumer (q, k and v projections
        # of a layer read the same LayerNorm output).
        self.quantized_acts: dict[str, tuple[str, str]] = {}

    def init(self, name: str, array: np.ndarray) -> str:
        self.new_inits.append(numpy_helper.from_array(array, name))
        return name

    def quantize_activation(self, x: str, nodes: list[onnx.NodeProto]) -> tuple[str, str]:
        """Returns (int8 tensor name, scale name: f32 scalar)."""
        if x in self.quantized_acts:
            return self.quantized_acts[x]
        base = f"{x}.q8"
        if self.mode == "static":
            s = float(self.act_scales[x])
            scale = self.init(f"{base}.scale", np.array(s, dtype=np.float32))
            zp = self.zero_point(base)
            nodes.append(helper.make_node("QuantizeLinear", [x, scale, zp], [base], name=base))
        else:
            nodes.append(helper.make_node("Abs", [x], [f"{base}.abs"], name=f"{base}.abs"))
            # No axes: reduce over all of them (the same in every opset).
            nodes.append(
                helper.make_node(
                    "ReduceMax", [f"{base}.abs"], [f"{base}.max"], name=f"{base}.max", keepdims=0
                )
            )
            tiny = self.init(f"{base}.tiny", np.array(TINY, dtype=np.float32))
            inv = self.init(f"{base}.inv_qmax", np.array(1.0 / QMAX, dtype=np.float32))
            nodes.append(
                helper.make_node("Max", [f"{base}.max", tiny], [f"{base}.amax"], name=f"{base}.amax")
            )
            scale = f"{base}.scale"
            nodes.append(helper.make_node("Mul", [f"{base}.amax", inv], [scale], name=scale))
            nodes.append(helper.make_node("Div", [x, scale], [f"{base}.div"], name=f"{base}.div"))
            nodes.append(
                helper.make_node("Round", [f"{base}.div"], [f"{base}.round"], name=f"{base}.round")
            )
            # |round(x / s)| <= 127, so + 128 lands in [1, 255]: no clipping needed.
            offset = self.init(f"{base}.offset", np.array(ZERO_POINT, dtype=np.float32))
            nodes.append(
                helper.make_node(
                    "Add", [f"{base}.round", offset], [f"{base}.shift"], name=f"{base}.shift"
                )
            )
            nodes.append(
                helper.make_node(
                    "Cast", [f"{base}.shift"], [base], name=f"{base}.cast", to=TensorProto.UINT8
                )
            )
            self.zero_point(base)
        self.quantized_acts[x] = (base, scale)
        return base, scale

    def zero_point(self, base: str) -> str:
        """The activations' constant zero point (uint8 128: symmetric around it)."""
        name = f"{base}.zero_point"
        if not any(i.name == name for i in self.new_inits):
            self.init(name, np.array(ZERO_POINT, dtype=np.uint8))
        return name

    def output_scale(
        self, name: str, act_scale: str, w_scale: np.ndarray, shape: list[int], nodes
    ) -> str:
        """The f32 multiplier of the int32 result: s_x × s_w, broadcast to `shape`."""
        if self.mode == "static":
            s = np.float32(self.act_scales_by_scale_name[act_scale]) * w_scale
            return self.init(f"{name}.out_scale", s.astype(np.float32).reshape(shape))
        ws = self.init(f"{name}.w_scale", w_scale.astype(np.float32).reshape(shape))
        out = f"{name}.out_scale"
        nodes.append(helper.make_node("Mul", [act_scale, ws], [out], name=out))
        return out

    @property
    def act_scales_by_scale_name(self) -> dict[str, float]:
        return {f"{x}.q8.scale": s for x, s in self.act_scales.items()}

    def rewrite_matmul(self, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        x, wname = node.input[0], node.input[1]
        w = self.consts.get(wname)
        if w is None or w.ndim != 2 or w.size < MIN_WEIGHT_ELEMS or x in self.consts.values:
            return None
        nodes: list[onnx.NodeProto] = []
        xq, xs = self.quantize_activation(x, nodes)
        wq, ws = quantize_weight(w.astype(np.float32), axis=1)
        name = node.name or node.output[0]
        wq_name = self.init(f"{name}.w_q8", wq)
        acc = f"{name}.acc_i32"
        nodes.append(
            helper.make_node("MatMulInteger", [xq, wq_name, f"{xq}.zero_point"], [acc], name=acc)
        )
        accf = f"{name}.acc_f32"
        nodes.append(helper.make_node("Cast", [acc], [accf], name=accf, to=TensorProto.FLOAT))
        scale = self.output_scale(name, xs, ws, [ws.size], nodes)
        nodes.append(helper.make_node("Mul", [accf, scale], [node.output[0]], name=name))
        self.count += 1
        return nodes

    def rewrite_conv(self, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        x, wname = node.input[0], node.input[1]
        w = self.consts.get(wname)
        if w is None or w.ndim != 4 or w.size < MIN_WEIGHT_ELEMS or x in self.consts.values:
            return None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            return None
        bias = self.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if len(node.input) > 2 and node.input[2] and bias is None:
            return None
        nodes: list[onnx.NodeProto] = []
        xq, xs = self.quantize_activation(x, nodes)
        wq, ws = quantize_weight(w.astype(np.float32), axis=0)
        name = node.name or node.output[0]
        wq_name = self.init(f"{name}.w_q8", wq)
        acc = f"{name}.acc_i32"
        nodes.append(
            helper.make_node(
                "ConvInteger", [xq, wq_name, f"{xq}.zero_point"], [acc], name=acc, **attrs
            )
        )
        accf = f"{name}.acc_f32"
        nodes.append(helper.make_node("Cast", [acc], [accf], name=accf, to=TensorProto.FLOAT))
        scale = self.output_scale(name, xs, ws, [1, ws.size, 1, 1], nodes)
        if bias is None:
            nodes.append(helper.make_node("Mul", [accf, scale], [node.output[0]], name=name))
        else:
            scaled = f"{name}.scaled"
            nodes.append(helper.make_node("Mul", [accf, scale], [scaled], name=scaled))
            b = self.init(f"{name}.bias", bias.astype(np.float32).reshape(1, -1, 1, 1))
            nodes.append(helper.make_node("Add", [scaled, b], [node.output[0]], name=name))
        self.count += 1
        return nodes

    def candidates(self, convs: bool) -> list[str]:
        """Names of the activations the rewrite quantizes (for calibration)."""
        out = []
        for node in self.graph.node:
            w = self.consts.get(node.input[1]) if len(node.input) > 1 else None
            if w is None or w.size < MIN_WEIGHT_ELEMS or node.input[0] in self.consts.values:
                continue
            if (node.op_type == "MatMul" and w.ndim == 2) or (
                convs and node.op_type == "Conv" and w.ndim == 4
            ):
                if node.input[0] not in out:
                    out.append(node.input[0])
        return out

    def run(self, convs: bool) -> onnx.ModelProto:
        new_nodes: list[onnx.NodeProto] = []
        for node in self.graph.node:
            replaced = None
            if node.op_type == "MatMul":
                replaced = self.rewrite_matmul(node)
            elif node.op_type == "Conv" and convs:
                replaced = self.rewrite_conv(node)
            new_nodes.extend(replaced if replaced is not None else [node])
        del self.graph.node[:]
        self.graph.node.extend(new_nodes)
        self.graph.initializer.extend(self.new_inits)
        prune(self.graph)
        return self.model


def gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrites each Gemm with a constant weight (alpha = beta = 1, no transA) as MatMul + Add,
    so the MatMul rewrite quantizes it (torch exports Linear on 2-D inputs as Gemm)."""
    consts = Consts(model.graph)
    new_nodes, new_inits, count = [], [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w = consts.get(node.input[1]) if node.op_type == "Gemm" else None
        if (w is None or w.ndim != 2 or attrs.get("transA", 0) != 0
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            new_nodes.append(node)
            continue
        if attrs.get("transB", 0):
            w = w.T
        name = node.name or node.output[0]
        wname = f"{name}.gemm_weight"
        new_inits.append(numpy_helper.from_array(np.ascontiguousarray(w, np.float32), wname))
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = f"{name}.gemm_matmul" if has_bias else node.output[0]
        new_nodes.append(helper.make_node("MatMul", [node.input[0], wname], [mm_out],
                                          name=f"{name}.matmul"))
        if has_bias:
            new_nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]],
                                              name=f"{name}.bias"))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    model.graph.initializer.extend(new_inits)
    prune(model.graph)
    return count


def prune(graph: onnx.GraphProto) -> None:
    """Drops nodes and initializers nothing reads any more (the old f32 weights)."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    for n in a.g.node:
                        needed.update(n.input)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


# ------------------------------------------------------------------------------------------
# Calibration (static mode)
# ------------------------------------------------------------------------------------------


def preprocess(path: Path, size: int, resize: str, interpolation: str, mean, std) -> np.ndarray:
    """clipsight's preprocessing (PIL resize, torchvision center crop), as [1, 3, N, N]."""
    from PIL import Image

    img = Image.open(path)
    from PIL import ImageOps

    img = ImageOps.exif_transpose(img).convert("RGB")
    resample = Image.BICUBIC if interpolation == "bicubic" else Image.BILINEAR
    w, h = img.size
    if resize == "squash":
        img = img.resize((size, size), resample)
    else:
        if w <= h:
            nw, nh = size, int(size * h / w)
        else:
            nw, nh = int(size * w / h), size
        img = img.resize((nw, nh), resample)
        left = int(round((nw - size) / 2.0))
        top = int(round((nh - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
    a = np.asarray(img, dtype=np.float32) / 255.0
    a = (a - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return a.transpose(2, 0, 1)[None].astype(np.float32)


def calibrate(
    model: onnx.ModelProto,
    names: list[str],
    photos: list[Path],
    input_name: str,
    spec: dict,
    percentile: float,
) -> dict[str, float]:
    """Per-tensor activation scales from real photos: the `percentile` of |x| over all of them."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    for n in names:
        if n not in existing:
            probe.graph.output.append(helper.make_empty_tensor_value_info(n))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    samples: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for p in photos:
        x = preprocess(p, **spec)
        outs = sess.run(names, {input_name: x})
        for n, v in zip(names, outs):
            samples[n].append(np.abs(v).ravel())
    scales = {}
    for n, vs in samples.items():
        amax = float(np.percentile(np.concatenate(vs), percentile)) if percentile < 100 else float(
            max(v.max() for v in vs)
        )
        scales[n] = max(amax, TINY) / QMAX
    return scales


def bundle_spec(bundle: Path | None) -> dict:
    if bundle is None:
        return dict(size=224, resize="shortest", interpolation="bicubic", mean=CLIP_MEAN, std=CLIP_STD)
    with open(bundle / "model.toml", "rb") as f:
        image = tomllib.load(f)["image"]
    return dict(
        size=image["size"],
        resize=image["resize"],
        interpolation=image["interpolation"],
        mean=image["mean"],
        std=image["std"],
    )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", type=Path, help="fp32 image encoder (ONNX)")
    ap.add_argument("output", type=Path, help="where to write the int8 encoder")
    ap.add_argument("--mode", choices=["dynamic", "static", "ort"], default="dynamic",
                    help="activation scales: per frame in the graph (default) or calibrated; "
                         "`ort`: onnxruntime's own quantize_dynamic, the fastest file for "
                         "`clipsight --backend ort` (tract runs it slowly)")
    ap.add_argument("--calibration", type=Path, help="folder of real photos (static mode)")
    ap.add_argument("--bundle", type=Path,
                    help="bundle whose model.toml gives the preprocessing (default: CLIP's)")
    ap.add_argument("--input-name", default=None, help="image input name (default: the first)")
    ap.add_argument("--percentile", type=float, default=99.999,
                    help="static mode: |x| percentile that maps to 127 (100: the max)")
    ap.add_argument("--no-conv", action="store_true", help="leave Conv nodes in f32")
    args = ap.parse_args(argv)

    if args.mode == "ort":
        from onnxruntime.quantization import QuantType, quantize_dynamic
        args.output.parent.mkdir(parents=True, exist_ok=True)
        quantize_dynamic(str(args.input), str(args.output), weight_type=QuantType.QInt8)
        size = args.output.stat().st_size
        print(f"{args.output}: onnxruntime quantize_dynamic, {size / 1e6:.1f} MB", file=sys.stderr)
        return 0

    model = onnx.load(str(args.input))
    gemms = gemm_to_matmul(model)
    if gemms:
        print(f"{gemms} Gemm nodes rewritten as MatMul + Add", file=sys.stderr)
    input_name = args.input_name or model.graph.input[0].name
    convs = not args.no_conv
    scales: dict[str, float] = {}
    if args.mode == "static":
        if args.calibration is None:
            ap.error("--mode static needs --calibration DIR")
        photos = sorted(
            p for p in args.calibration.iterdir()
            if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp")
        )
        if not photos:
            ap.error(f"{args.calibration}: no photos")
        names = Rewriter(model, "static", {}).candidates(convs)
        scales = calibrate(model, names, photos, input_name, bundle_spec(args.bundle), args.percentile)
        print(f"calibrated {len(names)} activations on {len(photos)} photos", file=sys.stderr)
    rw = Rewriter(model, args.mode, scales)
    out = rw.run(convs)
    out.doc_string = (
        (out.doc_string + "\n" if out.doc_string else "")
        + f"int8 ({args.mode}, symmetric, per-channel weights) by clipsight models/quantize"
    )
    onnx.checker.check_model(out)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(out, str(args.output))
    size = args.output.stat().st_size
    print(f"{args.output}: {rw.count} MatMul/Conv nodes in int8, {size / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
