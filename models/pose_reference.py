#!/usr/bin/env python3
"""Writes tests/fixtures/pose-reference.json: what the Python reference (models/person_eval.py,
onnxruntime + PIL) makes of a few fixture photos with models/person, for the Rust parity tests
(tests/integration/pose.rs).

    pip install -r models/requirements-person.txt      # numpy, pillow, onnxruntime (pinned)
    python models/pose_reference.py                    # rewrites the fixture (deterministic)

Per photo (tests/fixtures/photos/*, decoded by PIL, and person.jpg turned 90 degrees clockwise):
the letterbox geometry, the sha256 of the letterboxed uint8 square, onnxruntime's raw output rows
[max_people][row length] and the decoded people (box, score, posture, direction, present) with the
frame's `present` and `fallen` (pose only), all by person_eval.py's functions and the manifest's
thresholds. Per synthetic pattern (computed the same way in Rust): the letterbox geometry and the
sha256 of the square, which checks the Rust resize against PIL's to the level without shipping
pixels.
"""

import hashlib
import json
import os
import re
import sys
import tomllib

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import person_eval as pe  # noqa: E402

ROOT = os.path.dirname(HERE)
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")
OUT = os.path.join(ROOT, "tests", "fixtures", "pose-reference.json")
# PIL's letterbox of person.jpg as a lossless PNG: the exact tensor onnxruntime ran, so tract can
# be fed the same pixels (the image crate's JPEG decoder differs from libjpeg-turbo by a level or
# two on some pixels, which moves the rows by a few 1e-3).
CANVAS_PNG = os.path.join(ROOT, "tests", "fixtures", "pose-person-letterbox.png")

# (name, file, transform): transform "rot90cw" = PIL's ROTATE_270 = image::imageops::rotate90.
CASES = [
    ("person.jpg", "person.jpg", None),
    ("person.jpg rot90cw", "person.jpg", "rot90cw"),
    ("bus.jpg", "bus.jpg", None),
    ("giraffe.jpg", "giraffe.jpg", None),
    ("dog.jpg", "dog.jpg", None),
    ("bus-rgba.png", "bus-rgba.png", None),
]
# Synthetic RGB patterns (width, height): up- and down-scaling, both axes, a narrow side, and
# both of Pillow 13's pass orders (vertical first when the height loses more than twice as many
# pixels as the width: 333x700 and 300x640 do, 330x640 does not).
PATTERNS = [(97, 41), (41, 97), (700, 333), (333, 700), (256, 256), (3, 300), (300, 256),
            (300, 640), (330, 640)]


def pattern(w, h):
    """r = (13x + 7y) mod 256, g = (x·y) mod 256, b = (5·(x xor y)) mod 256; Rust computes the same."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    rgb = np.stack([(13 * x + 7 * y) % 256, (x * y) % 256, (5 * (x ^ y)) % 256], -1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def letterbox(im, size):
    x, (sx, sy, px, py) = pe.preprocess(im, size)
    canvas = x[0].astype(np.uint8)
    nw, nh = round(sx * im.size[0]), round(sy * im.size[1])
    geo = dict(nw=int(nw), nh=int(nh), px=int(px), py=int(py))
    return geo, hashlib.sha256(canvas.tobytes()).hexdigest(), canvas


def main():
    bundle = os.path.join(HERE, "person")
    manifest = tomllib.load(open(os.path.join(bundle, "model.toml"), "rb"))
    th = {**manifest["person"], **manifest["posture"], **manifest["fall"]}
    model = pe.PersonModel(bundle)
    size = manifest["model"]["size"]
    out = {
        "format": 1,
        "generator": "models/pose_reference.py",
        "model_sha256": manifest["model"]["sha256"],
        "onnxruntime": __import__("onnxruntime").__version__,
        "pillow": Image.__version__,
        "photos": {},
        "patterns": [],
    }
    for name, file, transform in CASES:
        im = pe.load_rgb(os.path.join(PHOTOS, file))
        if transform == "rot90cw":
            im = im.transpose(Image.Transpose.ROTATE_270)
        geo, digest, canvas = letterbox(im, size)
        if name == "person.jpg":
            Image.fromarray(canvas).save(CANVAS_PNG, optimize=True)
            out["canvas_png"] = {"photo": name, "file": os.path.basename(CANVAS_PNG), "canvas_sha256": digest}
        rows, _ = model.raw(im)
        people = model.people(im, th)
        out["photos"][name] = {
            "file": f"photos/{file}",
            "transform": transform,
            "size": list(im.size),
            "letterbox": geo,
            "canvas_sha256": digest,
            # float32 values written in their shortest round-trip form
            "rows": [[float(str(v)) for v in r] for r in rows.reshape(rows.shape[-2], rows.shape[-1])],
            "people": [
                {
                    "box": [round(float(v), 3) for v in p["box"]],
                    "score": float(p["score"]),
                    "posture": pe.posture(p, th),
                    "direction": pe.direction(p),
                    "present": bool(p["score"] >= th["presence_score"] or pe.posture(p, th) == "lying"),
                }
                for p in people
            ],
            "present": bool(pe.present(people, th)),
            "fallen": bool(pe.fallen(people, th)),
        }
        print(name, geo, [(round(p["score"], 3), pe.posture(p, th)) for p in people],
              "fallen", out["photos"][name]["fallen"])
    for w, h in PATTERNS:
        geo, digest, _ = letterbox(pattern(w, h), size)
        out["patterns"].append({"width": w, "height": h, "letterbox": geo, "canvas_sha256": digest})
    text = json.dumps(out, indent=1)
    # one line per list of numbers (rows, boxes, sizes), so the file reads and diffs well
    text = re.sub(r"\[\s+([-0-9.e,\s]+?)\s+\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    with open(OUT, "w") as f:
        f.write(text + "\n")
    print("wrote", os.path.relpath(OUT, ROOT))


if __name__ == "__main__":
    main()
