#!/usr/bin/env python3
"""Person presence of the pose stage on a COCO folder with YOLO labels.

Runs `clipsight classify --person-model` on every image of DIR/images and counts, against the
YOLO boxes in DIR/labels (class 0 = person, `class cx cy w h` normalized): recall on the photos
with a person box covering at least 5 % of the image, and false person on the photos with no
person box. Photos with only small people are left out. No third-party Python packages.

    python3 models/coco_presence.py DIR [--clipsight target/release/clipsight]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MIN_AREA = 0.05


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--clipsight", type=Path, default=REPO / "target/release/clipsight")
    ap.add_argument("--threads", default="2")
    args = ap.parse_args()
    images = sorted((args.dir / "images").iterdir())
    out = subprocess.run(
        [str(args.clipsight), "classify", "--model", str(REPO / "models/default"),
         "--person-model", str(REPO / "models/person"),
         "--bank", str(REPO / "prompts/banks/objects.safetensors"),
         "--threads", args.threads, "--json", *map(str, images)],
        capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(out.stderr)
    found = {}
    for line in out.stdout.splitlines():
        d = json.loads(line)
        found[Path(d["image"]).stem] = bool(d.get("people"))
    pos = tp = neg = fp = 0
    for stem, seen in found.items():
        label = args.dir / "labels" / f"{stem}.txt"
        areas = []
        if label.exists():
            for row in label.read_text().split("\n"):
                p = row.split()
                if p and p[0] == "0":
                    areas.append(float(p[3]) * float(p[4]))
        if not areas:
            neg += 1
            fp += seen
        elif max(areas) >= MIN_AREA:
            pos += 1
            tp += seen
    print(f"person recall (a person box >= {MIN_AREA:.0%} of the image): {tp}/{pos} = {tp / pos:.3f}")
    print(f"false person (no person box): {fp}/{neg} = {fp / neg:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
