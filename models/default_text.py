"""The text tower of the default bundle: all-MiniLM-L6-v2 as one static ONNX graph.

input_ids, attention_mask, token_type_ids: i64 [batch, ctx]  ->  text_embeds: f32 [batch, 384]

BERT (6 layers, 12 heads, hidden 384, exact erf GELU, post-LayerNorm) followed by the
sentence-transformers head of all-MiniLM-L6-v2: mean over the tokens the attention mask keeps,
then L2 normalization (the division of the mean is skipped: the normalization cancels it).
The bundle's graph then subtracts a fixed centering vector (the mean embedding of the ImageNet
class prompts, see build_default.py) and normalizes again. Opset 14, static shapes, LayerNorm
written out (ReduceMean/Sub/Mul/Sqrt), weights stored int8 per output channel (default_onnx.py).

`reference_embed` is the same network in float64 numpy: the build computes its constants with
it and checks the graphs against it (and the f32 graph against transformers' BertModel).
"""

import json

import numpy as np
from onnx import TensorProto

from default_onnx import Graph, quantize_int8

HIDDEN = 384
HEADS = 12
HEAD_DIM = HIDDEN // HEADS
LAYERS = 6
LN_EPS = 1e-12
MASK_NEG = -1e9


def load_weights(safetensors_path):
    from safetensors.numpy import load_file

    return {k: v.astype(np.float32) for k, v in load_file(safetensors_path).items() if v.dtype != np.int64}


def _layer_norm(g, x, gamma, beta, prefix):
    mu = g.op("ReduceMean", [x], axes=[-1], keepdims=1)
    d = g.op("Sub", [x, mu])
    var = g.op("ReduceMean", [g.op("Mul", [d, d])], axes=[-1], keepdims=1)
    eps = g.const(prefix + "_eps", np.array(LN_EPS, np.float32))
    den = g.op("Sqrt", [g.op("Add", [var, eps])])
    y = g.op("Div", [d, den])
    y = g.op("Mul", [y, g.const(prefix + "_gamma", gamma)])
    return g.op("Add", [y, g.const(prefix + "_beta", beta)])


def _linear(g, x, w, b, prefix, store):
    """x @ w.T + b with torch's [out, in] weight; stored transposed as [in, out] (axis 1 = out)."""
    wn = g.weight(prefix + "_w", np.asarray(w, np.float32).T, store, axis=1)
    y = g.op("MatMul", [x, wn])
    return g.op("Add", [y, g.const(prefix + "_b", np.asarray(b, np.float32))])


def build_graph(w, batch, ctx, store, center=None):
    """The text encoder as an onnx.ModelProto. `store`: "f32" or "int8" for the large matrices.
    `center` (f32 [384] or None): subtracted after the L2 normalization, then normalized again."""
    g = Graph("minilm_l6_v2_mean_pool")
    ids = g.input("input_ids", TensorProto.INT64, [batch, ctx])
    mask = g.input("attention_mask", TensorProto.INT64, [batch, ctx])
    tt = g.input("token_type_ids", TensorProto.INT64, [batch, ctx])

    table = w["embeddings.word_embeddings.weight"]
    if store == "int8":
        # Gather the int8 rows first, then dequantize only those: the dequantized 30522 x 384
        # table is above tract's folding budget (default_onnx.TRACT_CONST_FOLD_BYTES), so tract
        # would dequantize all of it on every run.
        q, scale = quantize_int8(table, axis=0)
        rows = g.op("Gather", [g.const("word_embeddings_q", q), ids], axis=0)
        row_scale = g.op("Gather", [g.const("word_embeddings_scale", scale.reshape(-1, 1)), ids], axis=0)
        x = g.op("Mul", [g.op("Cast", [rows], to=TensorProto.FLOAT), row_scale])
    else:
        x = g.op("Gather", [g.weight("word_embeddings", table, store, axis=0), ids], axis=0)
    pos = g.const("position_embeddings", w["embeddings.position_embeddings.weight"][:ctx])
    x = g.op("Add", [x, pos])
    typ = g.const("token_type_embeddings", w["embeddings.token_type_embeddings.weight"])
    x = g.op("Add", [x, g.op("Gather", [typ, tt], axis=0)])
    x = _layer_norm(g, x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], "emb_ln")

    maskf = g.op("Cast", [mask], to=TensorProto.FLOAT)
    one = g.const("one", np.array(1.0, np.float32))
    neg = g.const("mask_neg", np.array(MASK_NEG, np.float32))
    bias = g.op("Mul", [g.op("Sub", [one, maskf]), neg])
    bias = g.op("Reshape", [bias, g.const("bias_shape", np.array([batch, 1, 1, ctx], np.int64))])

    split_shape = g.const("split_shape", np.array([batch, ctx, HEADS, HEAD_DIM], np.int64))
    merge_shape = g.const("merge_shape", np.array([batch, ctx, HIDDEN], np.int64))
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        n = f"l{i}"
        a = p + "attention.self."
        q = _linear(g, x, w[a + "query.weight"], w[a + "query.bias"], n + "_q", store)
        k = _linear(g, x, w[a + "key.weight"], w[a + "key.bias"], n + "_k", store)
        v = _linear(g, x, w[a + "value.weight"], w[a + "value.bias"], n + "_v", store)
        q = g.op("Transpose", [g.op("Reshape", [q, split_shape])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [k, split_shape])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [v, split_shape])], perm=[0, 2, 1, 3])
        s = g.op("Mul", [g.op("MatMul", [q, k]), g.shared("attn_scale", np.array(HEAD_DIM**-0.5, np.float32))])
        s = g.op("Add", [s, bias])
        s = g.op("Softmax", [s], axis=-1)
        c = g.op("Transpose", [g.op("MatMul", [s, v])], perm=[0, 2, 1, 3])
        c = g.op("Reshape", [c, merge_shape])
        o = p + "attention.output."
        h = _linear(g, c, w[o + "dense.weight"], w[o + "dense.bias"], n + "_o", store)
        x = _layer_norm(g, g.op("Add", [h, x]), w[o + "LayerNorm.weight"], w[o + "LayerNorm.bias"], n + "_ln1")
        f = _linear(g, x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"], n + "_f1", store)
        # exact GELU: 0.5 * f * (1 + erf(f / sqrt(2)))
        e = g.op("Erf", [g.op("Mul", [f, g.const(n + "_rsqrt2", np.array(2.0**-0.5, np.float32))])])
        f = g.op("Mul", [g.op("Mul", [f, g.op("Add", [e, one])]), g.const(n + "_half", np.array(0.5, np.float32))])
        f = _linear(g, f, w[p + "output.dense.weight"], w[p + "output.dense.bias"], n + "_f2", store)
        x = _layer_norm(g, g.op("Add", [f, x]), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], n + "_ln2")

    # masked sum over tokens as a batched matmul: [B,1,L] @ [B,L,H] -> [B,1,H]
    m3 = g.op("Reshape", [maskf, g.const("mask_row_shape", np.array([batch, 1, ctx], np.int64))])
    pooled = g.op("MatMul", [m3, x])
    pooled = g.op("Reshape", [pooled, g.const("pooled_shape", np.array([batch, HIDDEN], np.int64))])
    norm = g.op("ReduceL2", [pooled], axes=[-1], keepdims=1)
    norm = g.op("Max", [norm, g.shared("norm_eps", np.array(1e-12, np.float32))])
    if center is None:
        g.op("Div", [pooled, norm], name="text_embeds")
    else:
        unit = g.op("Div", [pooled, norm])
        c = g.op("Sub", [unit, g.const("center", np.asarray(center, np.float32))])
        cn = g.op("Max", [g.op("ReduceL2", [c], axes=[-1], keepdims=1), g.shared("norm_eps", np.array(1e-12, np.float32))])
        g.op("Div", [c, cn], name="text_embeds")
    g.output("text_embeds", TensorProto.FLOAT, [batch, HIDDEN])
    doc = (
        "all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0): BERT + masked mean pooling + L2 norm"
        + ("" if center is None else " - ImageNet class-prompt mean + L2 norm (hubness centering)")
        + f"; static [{batch},{ctx}]; weights stored as {store}"
    )
    return g.model(doc)


def runtime_tokenizer_json(src_json_text):
    """MiniLM's tokenizer.json with padding and truncation removed (the runtime pads/truncates)."""
    t = json.loads(src_json_text)
    t["padding"] = None
    t["truncation"] = None
    return json.dumps(t, ensure_ascii=False, separators=(",", ":")) + "\n"


def reference_weights(w, store):
    """The weights exactly as a graph stored as `store` computes with them (float64)."""
    from default_onnx import stored_value

    out = {}
    for k, v in w.items():
        if k == "embeddings.word_embeddings.weight":
            v = stored_value(v, store, axis=0)
        elif k.startswith("encoder.layer.") and k.endswith("dense.weight") or k.endswith(("query.weight", "key.weight", "value.weight")):
            v = stored_value(v.T, store, axis=1).T  # quantized per output channel, as in the graph
        out[k] = np.asarray(v, np.float64)
    return out


def reference_embed(w64, ids_list):
    """all-MiniLM-L6-v2 in numpy float64 on token id lists (no padding: one sequence at a time
    is slow, so sequences of equal length are batched). Returns L2-normalized [n, 384].

    This is the reference the build computes its constants (the centering vector, the class
    matrix S) with: float64 numpy has no dependence on onnxruntime's kernels, so rebuilding on
    another machine gives the same f32 constants."""
    out = np.zeros((len(ids_list), HIDDEN))
    by_len = {}
    for i, ids in enumerate(ids_list):
        by_len.setdefault(len(ids), []).append(i)
    for n, rows in sorted(by_len.items()):
        ids = np.array([ids_list[i] for i in rows], np.int64)
        x = w64["embeddings.word_embeddings.weight"][ids]
        x = x + w64["embeddings.position_embeddings.weight"][:n] + w64["embeddings.token_type_embeddings.weight"][0]
        x = _ln64(x, w64, "embeddings.LayerNorm")
        b = len(rows)
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            lin = lambda t, name: t @ w64[p + name + ".weight"].T + w64[p + name + ".bias"]
            q = lin(x, "attention.self.query").reshape(b, n, HEADS, HEAD_DIM).transpose(0, 2, 1, 3)
            k = lin(x, "attention.self.key").reshape(b, n, HEADS, HEAD_DIM).transpose(0, 2, 3, 1)
            v = lin(x, "attention.self.value").reshape(b, n, HEADS, HEAD_DIM).transpose(0, 2, 1, 3)
            s = (q @ k) / np.sqrt(HEAD_DIM)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            c = (s @ v).transpose(0, 2, 1, 3).reshape(b, n, HIDDEN)
            x = _ln64(lin(c, "attention.output.dense") + x, w64, p + "attention.output.LayerNorm")
            f = lin(x, "intermediate.dense")
            f = 0.5 * f * (1.0 + _erf(f / np.sqrt(2.0)))
            x = _ln64(lin(f, "output.dense") + x, w64, p + "output.LayerNorm")
        e = x.mean(axis=1)
        out[rows] = e / np.linalg.norm(e, axis=1, keepdims=True)
    return out


def _ln64(x, w64, name):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * w64[name + ".weight"] + w64[name + ".bias"]


def _erf(x):
    import torch

    return torch.special.erf(torch.from_numpy(x)).numpy()


def runtime_ids(tok, text, ctx):
    """Token ids as the clipsight runtime makes them: [CLS] ... [SEP] from the post-processor,
    truncated to ctx keeping the final [SEP]."""
    e = tok.encode(text, add_special_tokens=True).ids
    return e if len(e) <= ctx else e[: ctx - 1] + [e[-1]]


def runtime_batch(tok, texts, ctx):
    """input_ids, attention_mask, token_type_ids (i64 [len(texts), ctx]), padded with id 0."""
    ids = np.zeros((len(texts), ctx), np.int64)
    mask = np.zeros((len(texts), ctx), np.int64)
    for i, t in enumerate(texts):
        e = runtime_ids(tok, t, ctx)
        ids[i, : len(e)] = e
        mask[i, : len(e)] = 1
    return ids, mask, np.zeros_like(ids)


class Encoder:
    """Tokenizes like the clipsight runtime and runs a text graph in onnxruntime, batch by batch."""

    def __init__(self, tokenizer_json_text, onnx_bytes, batch, ctx):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_str(tokenizer_json_text)
        from default_onnx import ort_session

        self.sess = ort_session(onnx_bytes)
        self.batch = batch
        self.ctx = ctx

    def encode(self, texts):
        out = []
        for s in range(0, len(texts), self.batch):
            chunk = list(texts[s : s + self.batch])
            real = len(chunk)
            chunk += [""] * (self.batch - real)
            ids, mask, tt = runtime_batch(self.tok, chunk, self.ctx)
            y = self.sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt})[0]
            out.append(y[:real])
        e = np.concatenate(out).astype(np.float64)
        return e / np.linalg.norm(e, axis=1, keepdims=True)
