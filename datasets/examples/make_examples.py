"""Regenerate datasets/examples/classic.jsonl: a few well-known CNNs as rfsearch specs.

Run: python datasets/examples/make_examples.py
Definitions follow TF-Slim (alexnet_v2, vgg_16: 'same'/'valid' padding) and
torchvision (resnet18, resnet50: stride on the 3x3 conv of each stage's first block).
Their published receptive fields are in ../shared/reference/published-values.md.
"""

from __future__ import annotations

import json
from pathlib import Path


def conv(name, k, s=1, p=0, inputs=None):
    layer = {"name": name, "op": "conv", "kernel": k, "stride": s, "padding": p}
    return layer | ({"inputs": inputs} if inputs else {})


def alexnet_v2():
    layers = [conv("conv1", 11, 4, "valid"),
              {"name": "pool1", "op": "maxpool", "kernel": 3, "stride": 2, "padding": "valid"},
              conv("conv2", 5, 1, "same"),
              {"name": "pool2", "op": "maxpool", "kernel": 3, "stride": 2, "padding": "valid"},
              conv("conv3", 3, 1, "same"), conv("conv4", 3, 1, "same"), conv("conv5", 3, 1, "same"),
              {"name": "pool5", "op": "maxpool", "kernel": 3, "stride": 2, "padding": "valid"}]
    return {"name": "alexnet_v2", "layers": layers}


def vgg_16():
    layers = []
    for block, repeats in enumerate((2, 2, 3, 3, 3), start=1):
        for i in range(1, repeats + 1):
            layers.append(conv(f"conv{block}/conv{block}_{i}", 3, 1, "same"))
            layers.append({"name": f"conv{block}/relu{block}_{i}", "op": "relu"})
        layers.append({"name": f"pool{block}", "op": "maxpool", "kernel": 2, "stride": 2,
                       "padding": "valid"})
    return {"name": "vgg_16", "layers": layers}


def _stem():
    return [conv("conv1", 7, 2, 3), {"name": "relu", "op": "relu"},
            {"name": "maxpool", "op": "maxpool", "kernel": 3, "stride": 2, "padding": 1}]


def resnet(name, blocks, bottleneck):
    """torchvision ResNet: residual shortcuts are real DAG edges."""
    layers, prev = _stem(), "maxpool"
    for stage, count in enumerate(blocks, start=1):
        for b in range(count):
            s = 2 if stage > 1 and b == 0 else 1
            pre = f"layer{stage}.{b}"
            if bottleneck:
                body = [conv(f"{pre}.conv1", 1, 1, 0, [prev]), conv(f"{pre}.conv2", 3, s, 1),
                        conv(f"{pre}.conv3", 1, 1, 0)]
            else:
                body = [conv(f"{pre}.conv1", 3, s, 1, [prev]), conv(f"{pre}.conv2", 3, 1, 1)]
            layers += body
            shortcut = prev
            if b == 0 and (s != 1 or bottleneck):
                layers.append(conv(f"{pre}.downsample", 1, s, 0, [prev]))
                shortcut = f"{pre}.downsample"
            layers.append({"name": f"{pre}.add", "op": "add",
                           "inputs": [body[-1]["name"], shortcut]})
            prev = f"layer{stage}" if b == count - 1 else f"{pre}.relu"
            layers.append({"name": prev, "op": "relu"})
    layers.append({"name": "avgpool", "op": "global_pool"})
    return {"name": name, "layers": layers, "output": "layer4"}


def main() -> None:
    nets = [alexnet_v2(), vgg_16(), resnet("resnet18", (2, 2, 2, 2), False),
            resnet("resnet50", (3, 4, 6, 3), True)]
    out = Path(__file__).with_name("classic.jsonl")
    out.write_text("".join(json.dumps(net) + "\n" for net in nets))
    print(f"wrote {len(nets)} specs to {out}")


if __name__ == "__main__":
    main()
