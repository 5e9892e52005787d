"""Regenerate the README's pictures from the zoo: python datasets/make_figures.py

growth.png: receptive field per layer of ResNet-18, ResNet-50, VGG-16 and MobileNetV2 at
224x224, border layers marked. boxes.png: receptive fields of three ResNet-18 output
features over the built-in synthetic image, with the stride grid.
"""

from __future__ import annotations

from pathlib import Path

from rfsearch import plot, zoo

FIGURES = Path(__file__).resolve().parent / "figures"


def main() -> None:
    FIGURES.mkdir(exist_ok=True)
    nets = [zoo.build(n) for n in ("resnet18", "resnet50", "vgg16", "mobilenet_v2")]
    print(plot.growth(nets, FIGURES / "growth.png", input_size=224, size=(900, 500)))
    print(plot.boxes(zoo.build("resnet18"), FIGURES / "boxes.png", input_size=224,
                     size=(600, 600)))


if __name__ == "__main__":
    main()
