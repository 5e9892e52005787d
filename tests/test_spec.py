"""Spec validation (rfsearch.spec): every bad spec is one exact, located line and
nothing else in the batch is lost; default layer names; input size spellings. Files
that cannot be read are in test_sources.py, networks without geometry in test_faults.py."""

import pandas as pd
import pytest

import rfsearch

OK = {"name": "ok", "layers": [{"op": "conv", "kernel": 3}]}


def conv(**fields):
    return {"name": "c", "op": "conv", "kernel": 3} | fields


def one(layers, **net):
    return {"name": "n", "layers": layers} | net


CASES = [
    (one([conv(op="convv")]),
     "spec #1 'n', layer #0 'c': unknown op 'convv' (did you mean 'conv'?); allowed: conv, "
     "maxpool, avgpool, pool, pad, add, concat, global_pool, dense, upsample, conv_transpose, "
     "pixel_shuffle, pixel_unshuffle, crop, identity, relu, relu6, "
     "leaky_relu, prelu, elu, selu, gelu, silu, swish, hard_swish, hardswish, mish, sigmoid, "
     "hard_sigmoid, tanh, softmax, batchnorm, layernorm, groupnorm, instancenorm, dropout, "
     "scale, bias, mul, squeeze_excite"),
    (one([conv(inputs=["nope"])]), "spec #1 'n', layer #0 'c': unknown input 'nope'"),
    (one([conv(inputs=["d"]), {"name": "d", "op": "relu"}]),
     "spec #1 'n', layer #0 'c': input 'd' is defined after this layer (layers must be in "
     "topological order; cycles are not allowed)"),
    (one([conv(inputs=["c"])]),
     "spec #1 'n', layer #0 'c': input 'c' is the layer itself (a cycle)"),
    (one([conv(), conv()]),
     "spec #1 'n', layer #1 'c': duplicate layer name 'c': the name is already used by layer #0"),
    (one([conv(name="input")]),
     "spec #1 'n', layer #0 'input': duplicate layer name 'input': the name is reserved for "
     "the network input"),
    (one([conv(), {"name": "s", "op": "add", "inputs": ["c"]}]),
     "spec #1 'n', layer #1 's': add needs at least 2 inputs, got 1"),
    (one([{"name": "c", "op": "conv"}]), "spec #1 'n', layer #0 'c': missing field 'kernel'"),
    (one([{"name": "c", "kernel": 3}]), "spec #1 'n', layer #0 'c': missing field 'op'"),
    (one([conv(kernel=2.5)]),
     "spec #1 'n', layer #0 'c': kernel must be a positive integer, got 2.5"),
    (one([conv(kernel=True)]),
     "spec #1 'n', layer #0 'c': kernel must be a positive integer, got True"),
    (one([conv(kernel=-3)]),
     "spec #1 'n', layer #0 'c': kernel must be a positive integer, got -3"),
    (one([conv(stride=0)]), "spec #1 'n', layer #0 'c': stride must be a positive integer, got 0"),
    (one([conv(dilation=[1, 0])]),
     "spec #1 'n', layer #0 'c': dilation must be a positive integer, got 0"),
    (one([{"name": "c", "op": "crop", "crop": -1}]),
     "spec #1 'n', layer #0 'c': crop must be a non-negative integer, got -1"),
    (one([conv(padding=-2**31)]),
     "spec #1 'n', layer #0 'c': padding must be at least -1073741824, got -2147483648"),
    (one([conv(padding="full")]),
     "spec #1 'n', layer #0 'c': padding must be an int, [h, w], [[top, bottom], [left, "
     "right]], 'valid', 'same' or 'same_lower', got 'full'"),
    (one([conv(kernel=[1, 2, 3, 4])]),
     "spec #1 'n': layer #0 kernel has 4 axes; a network has 1, 2 or 3"),
    (one([conv(kernel=[3, 3]), {"name": "d", "op": "conv", "kernel": [3, 3, 3]}]),
     "spec #1 'n': mixed arities: layer #0 kernel has 2 axes, layer #1 kernel has 3"),
    (one([conv(kernel=[3, 3], padding=[1, 1, 1])]),
     "spec #1 'n': mixed arities: layer #0 kernel has 2 axes, layer #0 padding has 3"),
    (one([conv(strid=2)]),
     "spec #1 'n', layer #0 'c': unknown field 'strid' (did you mean 'stride'?)"),
    (one([{"name": "r", "op": "relu", "kernel": 3}]),
     "spec #1 'n', layer #0 'r': field 'kernel' does not apply to op 'relu'"),
    (one([conv(kernel=2**31)]),
     "spec #1 'n', layer #0 'c': kernel must be at most 1073741824, got 2147483648"),
    (one([conv()], output="zzz"), "spec #1 'n': output 'zzz' is not a layer name"),
    (one([conv()], outptu="c"), "spec #1 'n': unknown field 'outptu' (did you mean 'output'?)"),
    ({"name": "n", "layers": []}, "spec #1 'n': layers must be a non-empty list"),
    ([1, 2], "spec #1: a spec must be an object, got list"),
]


@pytest.mark.parametrize(("bad", "message"), CASES)
def test_bad_spec_message_is_exact_and_other_rows_survive(bad, message):
    df = rfsearch.evaluate([OK, bad, OK], input_size=32)
    assert df["error"].isna().tolist() == [True, False, True]
    assert df["error"][1] == message
    assert df["rf_h"].tolist()[0::2] == [3, 3]
    assert df.iloc[1][["rf_h", "stride_h", "out_h"]].isna().all()


def test_default_layer_names_never_collide_with_given_ones():
    net = {"name": "n", "layers": [{"name": "conv1", "op": "conv", "kernel": 3},
                                   {"op": "conv", "kernel": 3}]}
    layers = rfsearch.evaluate(net, per_layer=True)
    assert layers["layer_name"].tolist() == ["conv1", "conv1_1"]
    assert layers["error"].isna().all()


def test_input_size_spellings():
    import numpy as np

    for size in (np.int64(32), (np.int32(32), 32), "32", "32x32", [32, 32]):
        assert rfsearch.evaluate(OK, input_size=size)["out_h"][0] == 30
    for bad in (2.5, "224_000", "٣٢", "32x", "1x2x3x4", (1, 2, 3, 4), True):
        with pytest.raises(rfsearch.SpecError, match=r"^input size must be"):
            rfsearch.evaluate(OK, input_size=bad)
    assert rfsearch.evaluate(OK, input_size=(32,))["out_w"][0] == 30  # one value: every axis
    row = rfsearch.evaluate([OK, {"name": "v", "layers": [{"op": "conv", "kernel": [3, 3, 3]}]}],
                            input_size="8x32x32")
    assert row["error"][0].endswith("input size 8x32x32 has 3 axes; this network has 2")
    assert pd.isna(row["error"][1]) and row["out_d"][1] == 6  # the good row is kept


def test_pad_is_padding_alone_and_source_is_kept_for_people():
    """'pad' (F.pad's geometry) takes only padding, negative to crop; a network's
    'source' (where an importer took it from) is accepted and does not change rows."""
    import rfsearch
    spec = {"name": "p", "source": {"framework": "torch"}, "layers": [
        {"op": "pad", "padding": [[1, 2], [0, -1]]}, {"op": "conv", "kernel": 3}]}
    row = rfsearch.evaluate(spec, input_size=8).iloc[0]
    assert (row["rf_h"], row["padding_h"], row["out_h"], row["padding_w"], row["out_w"]) == (
        3, 1, 9, 0, 5)
    bad = dict(spec, layers=[{"op": "pad", "kernel": 3}])
    assert "does not apply to op 'pad'" in rfsearch.evaluate(bad).iloc[0]["error"]
