"""Networks that are well-formed but have no geometry (rfsearch.faults): a merge of
inputs with different strides or map sizes, an output smaller than one pixel. Each is
one error row with a one-line message naming the spec and the layer; the other rows
survive."""

import rfsearch

OK = {"name": "ok", "layers": [{"op": "conv", "kernel": 3}]}


def test_merge_of_different_strides_is_an_error_row():
    # The misaligned network of google-research/receptive_field's receptive_field_test.py.
    net = {"name": "mis", "layers": [
        {"name": "a", "op": "conv", "kernel": 5, "stride": 2, "padding": [[2, 1], [2, 1]]},
        {"name": "b1", "op": "conv", "kernel": 3, "inputs": ["input"]},
        {"name": "b2", "op": "conv", "kernel": 3},
        {"name": "sum", "op": "add", "inputs": ["a", "b2"]},
    ]}
    df = rfsearch.evaluate([OK, net])
    assert df["error"][1] == (
        "spec #1 'mis', layer #3 'sum': inputs have different effective strides "
        "(h: 2 vs 1; w: 2 vs 1)")
    assert df["error"].isna()[0]


def test_merge_of_different_map_sizes_is_an_error_row():
    net = {"name": "sz", "layers": [
        {"name": "a", "op": "conv", "kernel": 3},
        {"name": "b", "op": "conv", "kernel": 1, "inputs": ["input"]},
        {"name": "cat", "op": "concat", "inputs": ["a", "b"]},
    ]}
    assert rfsearch.evaluate(net)["error"].isna()[0]  # sizes unknown: fine
    df = rfsearch.evaluate(net, input_size=(16, 8))
    assert df["error"][0] == (
        "spec #0 'sz', layer #2 'cat': inputs have different feature-map sizes "
        "(h: 14 vs 16; w: 6 vs 8)")


def test_output_smaller_than_one_pixel():
    net = {"name": "tiny", "layers": [{"name": "c1", "op": "conv", "kernel": 3, "stride": 2},
                                      {"name": "c2", "op": "conv", "kernel": 5}]}
    df = rfsearch.evaluate(net, input_size=(9, 40))
    assert df["error"][0] == (
        "spec #0 'tiny', layer #1 'c2': output is smaller than 1 pixel at input size 9x40")
    assert rfsearch.evaluate(net, input_size=11)["error"].isna()[0]


def test_a_map_below_one_unit_before_align_corners_is_an_error_row():
    """align_corners reads depend on map sizes: a map of -1 or 0 units before one aborted
    the whole process (an XLA extent of 2**62) or raised OverflowError; now that network
    is one error row and the others keep theirs."""
    up = {"op": "upsample", "factor": 2, "mode": "bilinear", "align_corners": True}
    shrunk = {"name": "s", "layers": [{"name": "c", "op": "conv", "kernel": 5}, up]}
    strided = {"name": "t", "layers": [{"name": "n0", "op": "conv", "kernel": 4, "stride": 2},
                                       {"name": "n2", "op": "conv", "kernel": 4, "stride": 2},
                                       up]}
    fine = {"name": "f", "layers": [{"op": "conv", "kernel": 3}, up]}
    for size in (1, 3, 4):
        df = rfsearch.evaluate([shrunk, OK], input_size=size, analysis=True)
        assert df["error"][0] == ("spec #0 's', layer #0 'c': output is smaller than 1 "
                                  f"pixel at input size {size}x{size}")
        assert df["error"].isna()[1] == (size >= 3)
    df = rfsearch.evaluate([strided, fine], input_size=5)
    assert df["error"][0].endswith("layer #1 'n2': output is smaller than 1 pixel at input "
                                   "size 5x5")
    assert df["error"].isna()[1] and df["rf_h"][1] == 4 and df["out_h"][1] == 6
    assert rfsearch.evaluate(shrunk, input_size=5)["rf_h"][0] == 5


def test_many_messages_word_each_row_as_one_location_would():
    """``faults.wheres`` (every row's location at once, used for empty maps and overflow)
    gives exactly ``str(faults.where(...))`` per row: default and given spec and layer
    names (quotes included), a file label, network and layer locations."""
    import numpy as np

    from rfsearch import faults

    specs = [{"name": name, "layers": [{"name": f"{layer}{j}", "op": "conv", "kernel": 3}
                                       for j in range(2)]}
             for name, layer in (("a'b", 'c"d'), ("plain", "x"), ("é", "l\\1"))]
    arrays = rfsearch.chains(np.full((5, 3), 3))
    for batch, label in ((rfsearch.encode(specs), "nets.jsonl"), (arrays, None)):
        ctx = faults.Context(batch, label, np.arange(len(batch)) * 7 + 2, (9, 9), 64)
        rows = np.arange(len(batch))[::-1]
        nodes = rows % 2 + 1
        assert faults.wheres(ctx, rows, nodes) == [
            str(faults.where(ctx, r, int(n))) for r, n in zip(rows, nodes, strict=True)]
        assert faults.wheres(ctx, rows, None) == [str(faults.where(ctx, r, None)) for r in rows]
