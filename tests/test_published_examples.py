"""The bundled example networks reproduce their published receptive fields.

Sources (listed in datasets/reference/README.md): google-research/receptive_field
RECEPTIVE_FIELD_TABLE.md (alexnet_v2, vgg_16: TF-Slim; the final end points also in
Araujo, Norris, Sim, "Computing Receptive Fields of Convolutional Neural Networks",
Distill 2019) and the torchvision ResNet stage values (resnet18, resnet50).
"""

import pytest

import rfsearch

# (network, end point): (RF, effective stride, effective padding)
PUBLISHED = {
    ("alexnet_v2", "conv1"): (11, 4, 0), ("alexnet_v2", "pool1"): (19, 8, 0),
    ("alexnet_v2", "conv2"): (51, 8, 16), ("alexnet_v2", "conv3"): (99, 16, 32),
    ("alexnet_v2", "conv4"): (131, 16, 48), ("alexnet_v2", "conv5"): (163, 16, 64),
    ("alexnet_v2", "pool5"): (195, 32, 64),
    ("vgg_16", "conv1/conv1_1"): (3, 1, 1), ("vgg_16", "pool1"): (6, 2, 2),
    ("vgg_16", "conv2/conv2_1"): (10, 2, 4), ("vgg_16", "pool2"): (16, 4, 6),
    ("vgg_16", "conv3/conv3_1"): (24, 4, 10), ("vgg_16", "conv3/conv3_2"): (32, 4, 14),
    ("vgg_16", "pool3"): (44, 8, 18), ("vgg_16", "conv4/conv4_1"): (60, 8, 26),
    ("vgg_16", "conv4/conv4_2"): (76, 8, 34), ("vgg_16", "pool4"): (100, 16, 42),
    ("vgg_16", "conv5/conv5_1"): (132, 16, 58), ("vgg_16", "conv5/conv5_2"): (164, 16, 74),
    ("vgg_16", "pool5"): (212, 32, 90),
    ("resnet18", "conv1"): (7, 2, None), ("resnet18", "maxpool"): (11, 4, None),
    ("resnet18", "layer1"): (43, 4, None), ("resnet18", "layer2"): (99, 8, None),
    ("resnet18", "layer3"): (211, 16, None), ("resnet18", "layer4"): (435, 32, None),
    ("resnet50", "layer1"): (35, 4, None), ("resnet50", "layer2"): (91, 8, None),
    ("resnet50", "layer3"): (267, 16, 133), ("resnet50", "layer4"): (427, 32, 213),
}


@pytest.fixture(scope="module", params=[None, 224])
def layers(request):
    df = rfsearch.evaluate("datasets/examples/classic.jsonl", per_layer=True,
                           input_size=request.param)
    return df.set_index(["name", "layer_name"])


@pytest.mark.parametrize("key", list(PUBLISHED))
def test_published_end_point(layers, key):
    rf, stride, padding = PUBLISHED[key]
    row = layers.loc[key]
    assert (row["rf_h"], row["rf_w"], row["stride_h"], row["stride_w"]) == (rf, rf, stride, stride)
    if padding is not None:
        assert (row["padding_h"], row["padding_w"]) == (padding, padding)
    assert bool(row["aligned"]) and pd_isna(row["error"])


def pd_isna(value):
    import pandas as pd

    return pd.isna(value)


def test_residual_paths_are_a_union_not_a_sum():
    df = rfsearch.evaluate("datasets/examples/classic.jsonl")
    resnet18 = df.set_index("name").loc["resnet18"]
    assert resnet18["rf_h"] == 435
    assert resnet18["rf_min_h"] == 11  # the path through every shortcut
