"""Build ``models/guard/``: the forgetting guard of the bundled model (a few downscaled COCO instances).

::

    python scripts/make_guard_set.py [--count 24] [--long-side 384] [--seed 0]

Draws ``--count`` COCO instances of ``splits/val`` (the validation split carved from the bundled
model's training pool) by a seeded shuffle, keeping objects that cover 5–80 % of their image, and
writes each image (JPEG, long side ``--long-side``) and mask (PNG, 0/255/128, nearest) with an
``index.csv`` and a ``SOURCES.md`` naming the original files. The guard set is committed; rerun
this only to rebuild it.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SPLIT = REPO / "splits" / "val"
OUT = REPO / "models" / "guard"
AREA = (0.05, 0.80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--long-side", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with (SPLIT / "index.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if "/coco/" in r["image"]]
    order = np.random.default_rng(args.seed).permutation(len(rows))
    OUT.mkdir(parents=True, exist_ok=True)
    index, sources = ["image,mask"], []
    for i in order:
        if len(sources) == args.count:
            break
        row = rows[i]
        mask = Image.open(SPLIT / row["mask"])
        area = float(np.mean(np.asarray(mask) == 255))
        if not AREA[0] <= area <= AREA[1]:
            continue
        image = Image.open(SPLIT / row["image"]).convert("RGB")
        scale = args.long_side / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        stem = f"{len(sources):02d}"
        image.resize(size, Image.BILINEAR).save(OUT / f"{stem}.jpg", quality=85)
        mask.resize(size, Image.NEAREST).save(OUT / f"{stem}.png", optimize=True)
        index.append(f"{stem}.jpg,{stem}.png")
        sources.append(f"| {stem} | `{Path(row['image']).name}` | `{Path(row['mask']).name}` | {area:.2f} |")
    (OUT / "index.csv").write_text("\n".join(index) + "\n", encoding="utf-8")
    (OUT / "SOURCES.md").write_text(
        "# Forgetting guard of the bundled model\n\n"
        f"{len(sources)} COCO 2017 object instances drawn from `splits/val` by `scripts/make_guard_set.py` "
        f"(seed {args.seed}; objects covering 5–80 % of the image), images re-encoded as JPEG with the long "
        f"side {args.long_side} px, masks resized nearest (0 background, 255 object, 128 ignore).\n\n"
        "Terms: COCO annotations CC BY 4.0 (COCO Consortium); images from Flickr under the licence "
        "recorded for each image in the COCO 2017 annotations.\n\n"
        "| guard | COCO image | mask | object share |\n|---|---|---|---|\n" + "\n".join(sources) + "\n",
        encoding="utf-8")


if __name__ == "__main__":
    main()
