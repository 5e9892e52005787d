"""Regenerate datasets/examples/classic.jsonl: a few well-known CNNs as rfsearch specs.

Run: python datasets/examples/make_examples.py
The specs come from ``rfsearch.zoo`` (TF-Slim alexnet_v2 and vgg_16; torchvision resnet18
and resnet50, stride on the 3x3 conv of each stage's first block). Their published
receptive fields are in datasets/reference/published_values.csv.
"""

from __future__ import annotations

import json
from pathlib import Path

from rfsearch import zoo

NETWORKS = ("alexnet_v2", "vgg_16", "resnet18", "resnet50")


def main() -> None:
    out = Path(__file__).with_name("classic.jsonl")
    out.write_text("".join(json.dumps(zoo.build(name)) + "\n" for name in NETWORKS))
    print(f"wrote {len(NETWORKS)} specs to {out}")


if __name__ == "__main__":
    main()
