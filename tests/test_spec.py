"""Every bad input is one exact, located line; nothing else in the batch is lost."""

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
     "maxpool, avgpool, pool, add, concat, global_pool, dense, identity, relu, relu6, "
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
    (one([conv(padding=-1)]),
     "spec #1 'n', layer #0 'c': padding must be a non-negative integer, got -1"),
    (one([conv(padding="full")]),
     "spec #1 'n', layer #0 'c': padding must be an int, [h, w], [[top, bottom], [left, "
     "right]], 'valid', 'same' or 'same_lower', got 'full'"),
    (one([conv(kernel=[1, 2, 3])]),
     "spec #1 'n', layer #0 'c': kernel must be an int or [h, w], got [1, 2, 3]"),
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


def test_merge_of_different_strides_is_an_error_row():
    # The misaligned network of published-values.md (Google receptive_field tests).
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


def test_file_errors_name_the_file_and_position(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"name": "a", "layers": [\n  {"op": "conv", "kernel": 3,}\n]}\n')
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    lines = tmp_path / "nets.jsonl"
    lines.write_text('{"name": "ok", "layers": [{"op": "conv", "kernel": 3}]}\n{"name": \n'
                     '{"name": "foo", "layers": [{"op": "conv", "kernel": 3}, '
                     '{"name": "c2", "op": "conv", "kernel": 3, "stride": 0}]}\n')
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: y\nlayers:\n  - {op: conv, kernel: 3\n")
    df = rfsearch.evaluate([bad_json, empty, lines, bad_yaml, tmp_path / "missing.json"])
    assert df["error"].tolist()[:1] == [
        f"{bad_json}: invalid JSON at line 2, column 30: Expecting property name enclosed in "
        "double quotes"]
    assert df["error"][1] == f"{empty}: file is empty"
    assert df["error"].isna()[2] and df["name"][2] == "ok"
    assert df["error"][3] == f"{lines}: invalid JSON at line 2, column 10: Expecting value"
    assert df["error"][4] == (
        f"{lines}: spec #2 'foo', layer #1 'c2': stride must be a positive integer, got 0")
    assert df["error"][5].startswith(f"{bad_yaml}: invalid YAML at line 4, column 1:")
    assert df["error"][6] == f"{tmp_path / 'missing.json'}: no such file"


def test_yaml_is_safe_loaded(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['echo hacked']\n")
    df = rfsearch.evaluate(evil)
    assert df["error"][0].startswith(f"{evil}: invalid YAML")


def test_bad_arguments_raise_one_spec_error():
    with pytest.raises(rfsearch.SpecError, match=r"^input size must be a positive integer"):
        rfsearch.evaluate(OK, input_size=0)
    with pytest.raises(rfsearch.SpecError, match=r"^input size must be N or HxW, got '3x'$"):
        rfsearch.evaluate(OK, input_size="3x")
    with pytest.raises(rfsearch.SpecError, match=r"^chunk_size must be a positive integer"):
        rfsearch.evaluate(OK, chunk_size=0)
    with pytest.raises(rfsearch.SpecError, match="kernel must be a positive integer"):
        rfsearch.encode({"layers": [{"op": "conv", "kernel": 0}]})
    with pytest.raises(rfsearch.SpecError, match=r"stride must be a positive integer at most"):
        rfsearch.chains([[3, 3]], stride=[[1, 0]])


def test_unreadable_inputs_are_rows_not_tracebacks(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"name": "g", "layers": [{"op": "conv", "kernel": 3}]}')
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"name": "caf\xe9", "layers": [{"op": "relu"}]}')
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    bom = tmp_path / "bom.json"
    bom.write_bytes(b'\xef\xbb\xbf{"name": "b", "layers": [{"op": "relu"}]}')
    folder = tmp_path / "dir.json"
    folder.mkdir()
    listname = tmp_path / "listname.json"
    listname.write_text('{"name": "l", "layers": [{"name": ["x"], "op": "relu"}]}')
    df = rfsearch.evaluate([good, latin1, deep, bom, folder, listname])
    assert df["error"].isna().tolist() == [True, False, False, True, False, False]
    assert df["error"][1] == f"{latin1}: not UTF-8 text (byte 0xe9 at offset 13)"
    assert df["error"][2] == f"{deep}: invalid JSON: nested too deeply"
    assert df["error"][4] == f"{folder}: is a directory, not a spec file"
    assert df["error"][5] == (f"{listname}: spec #0 'l', layer #0: name must be a string, "
                              "got ['x']")


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
    for bad in (2.5, "224_000", "٣٢", "32x", "1x2x3", (32,), True):
        with pytest.raises(rfsearch.SpecError, match=r"^input size must be"):
            rfsearch.evaluate(OK, input_size=bad)


def test_multi_document_yaml_and_json_lines_in_a_json_file(tmp_path):
    yaml_file = tmp_path / "multi.yaml"
    yaml_file.write_text("name: a\nlayers: [{op: conv, kernel: 3}]\n---\n"
                         "- name: b\n  layers: [{op: conv, kernel: 5}]\n")
    lines = tmp_path / "lines.json"
    lines.write_text('{"name": "x", "layers": [{"op": "conv", "kernel": 3}]}\n'
                     '{"name": "y", "layers": [{"op": "conv", "kernel": 5, "strid": 1}]}\n')
    df = rfsearch.evaluate([yaml_file, lines])
    assert df["name"].tolist() == ["a", "b", "x", "y"]
    assert df["rf_h"].tolist()[:3] == [3, 5, 3]
    assert df["error"][3] == (f"{lines}: spec #1 'y', layer #0 'conv0': unknown field 'strid' "
                              "(did you mean 'stride'?)")
