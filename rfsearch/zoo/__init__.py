"""Well-known CNNs as rfsearch specs, with the layer names of their published end points.

``build(reference)`` returns a spec dict; ``names()`` lists what is registered. The
builders are importable for their parameters (``resnet(depth=50, stride_in="last")``).
"""

from .decoders import (
    deeplabv3_resnet,
    espcn,
    fpn_resnet,
    googlenet,
    resnet_body,
    tcn,
    unet,
    unet_crops,
    unet_same,
    wavenet,
)
from .efficientnet import efficientnet
from .graph import Graph
from .nas import nasbench101, nasbench201, parse_arch_str
from .registry import PREFIX, REGISTRY, build, names, parse_reference
from .regnet import anynet, regnet_stages, regnetx
from .slim import (
    alexnet_v2,
    inception_resnet_v2,
    inception_v2,
    inception_v3,
    inception_v4,
    mobilenet_v1,
    resnet_slim,
)
from .slim import vgg as vgg_slim
from .torchvision import alexnet, mobilenet_v2, resnet, vgg
from .video import r3d_18

__all__ = [
    "PREFIX", "REGISTRY", "Graph", "alexnet", "alexnet_v2", "anynet", "build",
    "deeplabv3_resnet", "efficientnet", "espcn", "fpn_resnet", "googlenet",
    "inception_resnet_v2", "inception_v2", "inception_v3", "inception_v4", "mobilenet_v1",
    "mobilenet_v2", "names", "nasbench101", "nasbench201", "parse_arch_str", "parse_reference",
    "r3d_18", "regnet_stages", "regnetx", "resnet", "resnet_body", "resnet_slim", "tcn",
    "unet", "unet_crops", "unet_same", "vgg", "vgg_slim", "wavenet",
]
