#!/usr/bin/env python3
"""Print the tuning grid behind the knobs of models/build_default.py.

    python models/build_default.py          # writes models/build/tune_cache.npz (needs --data)
    python models/default_tune.py           # this grid, in numpy (seconds)

The knobs: centering on/off, the softmax temperature T and the person mix; the preprocessing
variants at the chosen knobs; and the naive ConSE baseline (the model card's "Naive ConSE
re-run here" row) for comparison.
Everything is computed from the cached backbone logits and float64 text embeddings, with the
ConSE head in numpy (the graphs compute the same; build_default.py checks that).

Scores, all on coco-train128 against the 80 COCO names (templates averaged):
- np1/np3, p1/p3: top-1/top-3 on the 62 dominant photos, non-person (44) and person (18);
- falseP: share of the non-person dominant photos whose top-1 is "person";
- pAUC: "person" score AUC over all 128 photos (61 with a labelled person, 67 without);
- cAUC: mean per-class AUC over the 128 photos (classes with >= 3 photos);
- cov1/cov3: top-1/top-3 on the ImageNet-covered dominant photos (default_data.is_covered).
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import build_default as bd  # noqa: E402
import default_data as dd  # noqa: E402
import default_image as di  # noqa: E402


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def auc(s, y):
    pos, neg = s[y], s[~y]
    return np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=os.path.join(HERE, "build", "tune_cache.npz"))
    ap.add_argument("--data", default=os.environ.get("CLIPSIGHT_COCO128", "/work/shared/data/coco-train128"))
    args = ap.parse_args()
    z = np.load(args.cache)
    ids = list(z["ids"])
    coco = list(z["coco"])
    names = list(z["classnames"])
    dom = dd.read_dominant(args.data)
    labels = [r[1] for r in dom]
    idx = [ids.index(r[0]) for r in dom]
    person_rows = [names.index(c) for c in dd.PERSON_CLASSES]
    Y = np.zeros((len(ids), len(coco)), bool)
    for i, iid in enumerate(ids):
        with open(os.path.join(args.data, "labels", iid + ".txt")) as f:
            for line in f:
                if line.strip():
                    Y[i, int(line.split()[0])] = True
    auc_classes = [j for j in range(len(coco)) if Y[:, j].sum() >= 3]
    main_pre = f"{bd.RESIZE}_{bd.INTERPOLATION}"
    covered = [dd.is_covered(r[1], z[f"logits_{main_pre}_f32"][i], names) for r, i in zip(dom, idx)]

    def evaluate(store, center, T, mix, pre=main_pre, top_k=0, person_rows=person_rows):
        rS, rA, rC = z[f"raw_S_{store}"], z[f"raw_A_{store}"], z[f"raw_C_{store}"]
        mu = rS.reshape(-1, rS.shape[-1]).mean(0) if center else np.zeros(rS.shape[-1])
        S = di.class_matrix(rS, rA, mu, person_rows, mix)
        C = unit(unit(rC - mu).mean(0))
        E = di.conse_numpy(z[f"logits_{pre}_{store}"], S, T, top_k)
        per, res = dd.score(E[idx], labels, coco, C)
        sims = E @ C.T
        cov = np.array([p[0] for p, c in zip(per, covered) if c])
        return dict(
            np1=res["nonperson"]["top1"], np3=res["nonperson"]["top3"], p1=res["person"]["top1"], p3=res["person"]["top3"],
            falseP=np.mean([p[1][0] == "person" for p, l in zip(per, labels) if l != "person"]),
            pAUC=auc(sims[:, 0], Y[:, 0]), cAUC=np.mean([auc(sims[:, j], Y[:, j]) for j in auc_classes]),
            cov1=np.mean(cov == 1), cov3=np.mean(cov <= 3))

    def row(tag, r):
        print(f"{tag:<44} | np {r['np1']:.2f} {r['np3']:.2f} | p {r['p1']:.2f} {r['p3']:.2f} | falseP {r['falseP']:.2f} "
              f"| pAUC {r['pAUC']:.3f} cAUC {r['cAUC']:.3f} | cov {r['cov1']:.2f} {r['cov3']:.2f}")

    print(f"ImageNet-covered dominant photos: {sum(covered)} of {len(dom)}")
    print("\n== naive ConSE baseline: T, top-10, no centering, no person rows")
    for store in ("f32", "int8"):
        for T in (1.0, 2.0):
            row(f"{store} baseline T={T:g} top-10", evaluate(store, False, T, 0.0, top_k=10, person_rows=[]))
    print(f"\n== grid (chosen: centering={bd.CENTER}, T={bd.TEMPERATURE:g}, person mix={bd.PERSON_MIX:g})")
    for store in ("f32", "int8"):
        for center in (False, True):
            for T in (1.0, 1.25, 1.5, 1.75, 2.0, 2.5):
                for mix in (0.0, 0.25, 0.4, 0.5, 0.6, 0.75):
                    mark = " <-" if (center, T, mix) == (bd.CENTER, bd.TEMPERATURE, bd.PERSON_MIX) else ""
                    row(f"{store} center={int(center)} T={T:<4g} mix={mix:<4g}{mark}", evaluate(store, center, T, mix))
    print("\n== preprocessing at the chosen knobs")
    for store in ("f32", "int8"):
        for pre in ("shortest_bicubic", "shortest_bilinear", "squash_bicubic", "squash_bilinear"):
            row(f"{store} {pre}", evaluate(store, bd.CENTER, bd.TEMPERATURE, bd.PERSON_MIX, pre=pre))


if __name__ == "__main__":
    main()
