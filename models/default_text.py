"""The text tower of the default bundle: all-MiniLM-L6-v2 as one static ONNX graph.

input_ids, attention_mask, token_type_ids: i64 [batch, ctx]  ->  text_embeds: f32 [batch, 384]

BERT (6 layers, 12 heads, hidden 384, exact erf GELU, post-LayerNorm) followed by the
sentence-transformers head of all-MiniLM-L6-v2: mean over the tokens the attention mask keeps,
then L2 normalization. The division of the mean is skipped because the L2 normalization that
follows cancels it. Opset 14, static shapes, LayerNorm written out (ReduceMean/Sub/Pow/Sqrt),
the 1/sqrt(head_dim) attention scale folded into the query weights.
"""

import json

import numpy as np
from onnx import TensorProto

from default_onnx import Graph

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


def _linear(g, x, w, b, prefix, store, scale=1.0):
    """x @ w.T + b with torch's [out, in] weight; stored transposed as [in, out] (axis 1 = out)."""
    wt = (np.asarray(w, np.float32).T * np.float32(scale)).astype(np.float32)
    wn = g.weight(prefix + "_w", wt, store, axis=1)
    y = g.op("MatMul", [x, wn])
    return g.op("Add", [y, g.const(prefix + "_b", (np.asarray(b, np.float32) * np.float32(scale)))])


def build_graph(w, batch, ctx, store):
    """The text encoder as an onnx.ModelProto. `store`: "f32" or "int8" for the large matrices."""
    g = Graph("minilm_l6_v2_mean_pool")
    ids = g.input("input_ids", TensorProto.INT64, [batch, ctx])
    mask = g.input("attention_mask", TensorProto.INT64, [batch, ctx])
    tt = g.input("token_type_ids", TensorProto.INT64, [batch, ctx])

    word = g.weight("word_embeddings", w["embeddings.word_embeddings.weight"], store, axis=0)
    x = g.op("Gather", [word, ids], axis=0)
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
        q = _linear(g, x, w[a + "query.weight"], w[a + "query.bias"], n + "_q", store, scale=HEAD_DIM**-0.5)
        k = _linear(g, x, w[a + "key.weight"], w[a + "key.bias"], n + "_k", store)
        v = _linear(g, x, w[a + "value.weight"], w[a + "value.bias"], n + "_v", store)
        q = g.op("Transpose", [g.op("Reshape", [q, split_shape])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [k, split_shape])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [v, split_shape])], perm=[0, 2, 1, 3])
        s = g.op("Add", [g.op("MatMul", [q, k]), bias])
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
    norm = g.op("Max", [norm, g.const("norm_eps", np.array(1e-12, np.float32))])
    g.op("Div", [pooled, norm], name="text_embeds")
    g.output("text_embeds", TensorProto.FLOAT, [batch, HIDDEN])
    doc = (
        "all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0): BERT + masked mean pooling + L2 norm; "
        f"static [{batch},{ctx}]; weights stored as {store}"
    )
    return g.model(doc)


def runtime_tokenizer_json(src_json_text):
    """MiniLM's tokenizer.json with padding and truncation removed (the runtime pads/truncates)."""
    t = json.loads(src_json_text)
    t["padding"] = None
    t["truncation"] = None
    return json.dumps(t, ensure_ascii=False, indent=2) + "\n"


class Encoder:
    """Tokenizes like the clipsight runtime and runs a text graph in onnxruntime, batch by batch."""

    def __init__(self, tokenizer_json_text, onnx_bytes, batch, ctx):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_str(tokenizer_json_text)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
        self.batch = batch
        self.ctx = ctx
        self.truncated = 0

    def tokenize(self, texts):
        """ids, mask, type ids (i64 [len(texts), ctx]) as the runtime makes them: special tokens
        added by the post-processor, truncated keeping [CLS] ... [SEP], padded with id 0."""
        n = len(texts)
        ids = np.zeros((n, self.ctx), np.int64)
        mask = np.zeros((n, self.ctx), np.int64)
        for i, t in enumerate(texts):
            e = self.tok.encode(t, add_special_tokens=True).ids
            if len(e) > self.ctx:
                self.truncated += 1
                e = e[: self.ctx - 1] + [e[-1]]
            ids[i, : len(e)] = e
            mask[i, : len(e)] = 1
        return ids, mask, np.zeros_like(ids)

    def encode(self, texts):
        out = []
        for s in range(0, len(texts), self.batch):
            chunk = list(texts[s : s + self.batch])
            real = len(chunk)
            chunk += [""] * (self.batch - real)
            ids, mask, tt = self.tokenize(chunk)
            y = self.sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt})[0]
            out.append(y[:real])
        e = np.concatenate(out).astype(np.float64)
        return e / np.linalg.norm(e, axis=1, keepdims=True)
