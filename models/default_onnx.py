"""Small, deterministic ONNX graph builder shared by the default-bundle build.

The default bundle's graphs are written node by node with `onnx.helper` from numpy weights,
not traced by `torch.onnx.export`: the result depends only on the weights and this code, so a
rebuild reproduces the files bit for bit, and the graph holds only ops tract handles (static
shapes, no shape arithmetic, constant "same" padding).

Weight storage (`store`):
- "f32":  plain f32 initializer.
- "int8": symmetric int8 per output channel, `DequantizeLinear(q, scale, 0, axis)` feeding the
  f32 compute. The dequantization has only constant inputs, so tract and onnxruntime fold it
  at load: the file is ~4x smaller and compute stays f32.
- "f16":  f16 initializer + `Cast` to f32 (also folded at load).
Each dequantized weight stays within tract's folding budget (TRACT_CONST_FOLD_BYTES): the image
classifier is split in two, and the text tower's word-embedding table (47 MB in f32) gathers its
int8 rows first and dequantizes only those, with the same arithmetic.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 14
INT8_MAX = 127.0
# tract folds a computation on constants at load only when its result is at most 4 MiB (or no
# larger than its inputs): tract-core's optim::CONST_FOLD_MEM_BUDGET. A dequantized weight
# above that is dequantized again on every run, so the graphs keep each one below it.
TRACT_CONST_FOLD_BYTES = 4 << 20


def quantize_int8(w, axis):
    """Symmetric per-channel int8 along `axis` (the output-channel axis): w ~ q * scale."""
    w = np.asarray(w, np.float32)
    reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.max(np.abs(w), axis=reduce_axes).astype(np.float32)
    scale = np.where(amax > 0, amax / np.float32(INT8_MAX), np.float32(1.0)).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale


def dequantize_int8(q, scale, axis):
    shape = [1] * q.ndim
    shape[axis] = -1
    return (q.astype(np.float32) * scale.reshape(shape)).astype(np.float32)


def stored_value(w, store, axis):
    """The f32 values a graph computes with after storing `w` as `store` (for numpy references)."""
    w = np.asarray(w, np.float32)
    if store == "f32":
        return w
    if store == "f16":
        return w.astype(np.float16).astype(np.float32)
    if store == "int8":
        q, s = quantize_int8(w, axis)
        return dequantize_int8(q, s, axis)
    raise ValueError(store)


class Graph:
    """Appends nodes and initializers with deterministic, readable names."""

    def __init__(self, name):
        self.name = name
        self.nodes = []
        self.inits = []
        self.inputs = []
        self.outputs = []
        self._n = 0
        self._const_names = set()

    def _fresh(self, hint):
        self._n += 1
        return f"{hint}_{self._n}"

    def input(self, name, elem_type, shape):
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, name, elem_type, shape):
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def const(self, name, array):
        assert name not in self._const_names, name
        self._const_names.add(name)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def shared(self, name, array):
        """A constant used in many places (added once, then reused by name)."""
        return name if name in self._const_names else self.const(name, array)

    def weight(self, name, w, store, axis):
        """A weight as an f32 tensor name, stored as f32, int8 (+DequantizeLinear) or f16 (+Cast)."""
        w = np.asarray(w, np.float32)
        if store == "f32":
            return self.const(name, w)
        if store == "f16":
            src = self.const(name + "_f16", w.astype(np.float16))
            return self.op("Cast", [src], name=name, to=TensorProto.FLOAT)
        if store == "int8":
            q, s = quantize_int8(w, axis)
            src = self.const(name + "_q", q)
            sc = self.const(name + "_scale", s)
            zp = self.const(name + "_zero", np.zeros_like(s, dtype=np.int8))
            return self.op("DequantizeLinear", [src, sc, zp], name=name, axis=axis)
        raise ValueError(store)

    def op(self, op_type, inputs, name=None, **attrs):
        out = name or self._fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out + "_node", **attrs))
        return out

    def model(self, doc):
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        m = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="clipsight models/build_default.py",
            producer_version="1",
            doc_string=doc,
        )
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=True)
        return m


def save(model, path):
    """Serialize deterministically (protobuf field order is fixed; no external data)."""
    data = model.SerializeToString(deterministic=True)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def ort_session(onnx_bytes, threads=1, level="basic"):
    """An onnxruntime session. The default, ORT_ENABLE_BASIC, computes what the graph says; the
    extended level ("all", onnxruntime's default) fuses DequantizeLinear + MatMul into a
    dynamically quantized int8 MatMul (activations rounded to int8 too), which is not what
    tract or the f32 reference compute: use it for timing only."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
