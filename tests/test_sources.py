"""Where specs come from (rfsearch.sources): JSON, JSON Lines, YAML and Parquet chain
tables, ``resolve`` of whatever a user passes, and the one-line errors of files that
cannot be read. One bad spec costs one row, never the file."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import rfsearch
from rfsearch.sources import read_document, read_source, resolve

# --- spec files ------------------------------------------------------------------------------

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


def test_a_bad_yaml_document_costs_its_own_row_only(tmp_path):
    """Documents are read one by one once the file fails as a whole: the good ones keep
    their rows (the whole file was one error row), the bad one names a line of the file."""
    multi = tmp_path / "multi.yaml"
    multi.write_text("name: a\nlayers: [{op: conv, kernel: 3}]\n---\n"
                     "name: b\nlayers: [{op: conv, kernel: 3\n---\n"
                     "- name: c\n  layers: [{op: conv, kernel: 5}]\n"
                     "- name: d\n  layers: [{op: conv, kernel: 7}]\n")
    df = rfsearch.evaluate(multi)
    assert df["name"].tolist()[:1] + df["name"].tolist()[2:] == ["a", "c", "d"]
    assert df["rf_h"].tolist()[2:] == [5, 7] and df["rf_h"][0] == 3
    assert df["error"].isna().tolist() == [True, False, True, True]
    assert df["error"][1].startswith(f"{multi}: invalid YAML at line 6, column 1:")


# --- Parquet and in-memory chain tables ---------------------------------------------------

def test_read_chains_from_parquet_ragged(tmp_path):
    table = pa.table({
        "name": ["a", "b", "c"],
        "kernel": [[3, 3], [7], [1, 3, 5]],
        "stride": [[1, 2], [2], [1, 1, 1]],
        "padding": [[1, 0], [3], [0, 1, 2]],
    })
    path = tmp_path / "chains.parquet"
    pq.write_table(table, path)
    df = rfsearch.evaluate(path, input_size=32)
    assert df["name"].tolist() == ["a", "b", "c"]
    assert df["rf_h"].tolist() == [5, 7, 7]
    assert df["stride_h"].tolist() == [2, 2, 1]
    assert df["padding_h"].tolist() == [1, 3, 3]
    assert df["out_h"].tolist() == [15, 16, 32]
    sliced = rfsearch.read_chains(table.slice(1, 2))
    assert rfsearch.evaluate(sliced)["rf_h"].tolist() == [7, 7]


def test_read_chains_rejects_bad_tables(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"kernel": [[3, 3], [3]], "stride": [[1], [2]]}), path)
    df = rfsearch.evaluate(path)
    assert df["error"][0] == f"{path}: spec #0 'chain0': stride has 1 entries, kernel has 2"
    pq.write_table(pa.table({"kernel": [[3, 0]]}), path)
    assert rfsearch.evaluate(path)["error"][0] == (
        f"{path}: spec #0 'chain0', layer #1 'layer1': kernel must be a positive integer at most "
        "1073741824, got 0")
    pq.write_table(pa.table({"kernal": [[3]]}), path)
    assert "needs a list column 'kernel'" in rfsearch.evaluate(path)["error"][0]


def test_parquet_rows_fail_one_by_one(tmp_path):
    path = tmp_path / "mixed.parquet"
    pq.write_table(pa.table({
        "name": ["a", "b", "c", "d", "e"],
        "kernel": [[3], [3, 0], [5], [3, None], []],
        "stride": [[1], [1, 1], [2], [1, 1], []],
    }), path)
    df = rfsearch.evaluate(path)
    assert df["name"].tolist() == ["a", "b", "c", "d", "e"]
    assert df["rf_h"].isna().tolist() == [False, True, False, True, True]
    assert df["rf_h"].dropna().tolist() == [3, 5]
    assert df["error"][1] == (f"{path}: spec #1 'b', layer #1 'layer1': kernel must be a "
                              "positive integer at most 1073741824, got 0")
    assert df["error"][3] == f"{path}: spec #3 'd': kernel is null or holds nulls"
    assert df["error"][4] == f"{path}: spec #4 'e': kernel list is empty"
    with pytest.raises(rfsearch.SpecError, match=r"^<table>: spec #1 'b'"):
        rfsearch.read_chains(pq.read_table(path))
    unsigned = pa.table({"kernel": pa.array([[3, 3], [3, 2**63 + 5], [2**30 + 1]],
                                            pa.list_(pa.uint64()))})
    df = rfsearch.evaluate(unsigned)
    assert df["rf_h"].tolist()[0] == 5
    assert df["error"][1].endswith("got a value beyond int64")
    assert df["error"][2].endswith(f"got {2**30 + 1}")


def test_a_frame_cell_arrow_cannot_read_costs_its_row_only():
    """pandas cells that are not integer lists (a string, a scalar, a bool, a value beyond
    int64, lists of two numpy dtypes) raised Arrow's own exceptions and lost every row."""
    frame = pd.DataFrame({
        "kernel": [[3, 3], ["5"], [3, True], [2**70], np.array([3], np.int8),
                   np.array([5], np.uint64), [7]],
        "stride": [[1, 2], [1], [1, 1], [1], [1], 2, [1]]})
    df = rfsearch.evaluate(frame)
    assert df["rf_h"].tolist()[:1] + df["rf_h"].tolist()[4:5] + df["rf_h"].tolist()[6:] == \
        [5, 3, 7]
    assert df["name"][6] == "chain6"
    errors = df["error"].tolist()
    assert errors[1] == "<table>: spec #1 'chain1': kernel must hold integers, got '5'"
    assert errors[2] == "<table>: spec #2 'chain2': kernel must hold integers, got True"
    assert errors[3].endswith("got 1180591620717411303424 (beyond int64)")
    assert errors[5] == "<table>: spec #5 'chain5': stride must be a list of integers, got 2"
    named = rfsearch.chains(np.full((3, 2), 3), names=["a", None, "c"])
    assert rfsearch.evaluate(named)["name"].tolist() == ["a", "chain1", "c"]  # as tables do


def test_tables_of_chains_in_memory():
    import pandas as pd

    frame = pd.DataFrame({"name": ["a", "b"], "kernel": [[3, 3], [7]], "stride": [[1, 2], [2]]})
    from_pandas = rfsearch.evaluate(frame, input_size=32)
    from_arrow = rfsearch.evaluate(pa.Table.from_pandas(frame), input_size=32)
    assert from_pandas.equals(from_arrow)
    assert from_pandas["rf_h"].tolist() == [5, 7] and from_pandas["name"].tolist() == ["a", "b"]


# --- reading each format (rfsearch.sources.read_source) -------------------------------------

CONV3 = {"name": "c3", "layers": [{"op": "conv", "kernel": 3}]}
CONV5 = {"name": "c5", "layers": [{"op": "conv", "kernel": 5, "stride": 2}]}
BAD = {"name": "bad", "layers": [{"op": "conv", "kernel": 0}]}


def names(src) -> list[str]:
    return [name for _, name in src.parsed()]


def positions(src) -> list[int]:
    return [i for i, _ in src.parsed()]


def test_json_file_of_one_spec_or_a_list(tmp_path):
    one = tmp_path / "one.json"
    one.write_text(json.dumps(CONV3))
    src = read_source(one)
    assert (src.label, names(src), src.index, src.errors, src.total) == (
        str(one), ["c3"], [0], [], 1)
    assert src.batch is None
    many = tmp_path / "many.json"
    many.write_text(json.dumps([CONV3, CONV5]))
    src = read_source(many)
    assert names(src) == ["c3", "c5"] and positions(src) == [0, 1] and src.total == 2
    assert src.plain.stride[1, 1].tolist() == [2, 2]  # several plain chains: read as columns


def test_json_lines_keep_file_positions_past_bad_lines(tmp_path):
    path = tmp_path / "nets.jsonl"
    path.write_text(json.dumps(CONV3) + "\n\n{not json\n" + json.dumps(BAD) + "\n"
                    + json.dumps(CONV5) + "\n")
    src = read_source(path)
    assert names(src) == ["c3", "c5"] and positions(src) == [0, 3] and src.total == 4
    assert sorted((i, name) for i, name, _ in src.errors) == [(1, None), (2, "bad")]
    assert all("\n" not in message for _, _, message in src.errors)
    message = {i: m for i, _, m in src.errors}
    assert message[1].startswith(f"{path}: invalid JSON at line 3, column 2")
    assert message[2] == (f"{path}: spec #2 'bad', layer #0 'conv0': kernel must be a "
                          "positive integer, got 0")


def test_yaml_documents_each_hold_a_spec_or_a_list(tmp_path):
    path = tmp_path / "nets.yml"
    path.write_text(yaml.safe_dump(CONV3) + "---\n" + yaml.safe_dump([CONV5, BAD]))
    src = read_source(path)
    assert names(src) == ["c3", "c5"] and positions(src) == [0, 1] and src.total == 3
    assert [(i, name) for i, name, _ in src.errors] == [(2, "bad")]


def test_parquet_chain_table_is_one_batch_and_one_error_per_bad_row(tmp_path):
    path = tmp_path / "chains.parquet"
    pq.write_table(pa.table({"name": ["a", "b", None],
                             "kernel": [[3, 3], [3, 0], [7]],
                             "stride": [[1, 2], [1, 1], [2]]}), path)
    src = read_source(path)
    assert src.networks == [] and src.total == 3 and list(src.index) == [0, 2]
    assert src.batch is not None and len(src.batch) == 2
    assert src.batch.names.tolist() == ["a", "chain2"]  # default names follow the table row
    assert [(i, name) for i, name, _ in src.errors] == [(1, "b")]
    assert src.errors[0][2].startswith(f"{path}: spec #1 'b', layer #1 'layer1': kernel")


def test_unsupported_file_types_are_refused_by_name(tmp_path):
    path = tmp_path / "nets.txt"
    path.write_text(json.dumps(CONV3))
    with pytest.raises(rfsearch.SpecError, match=r"nets\.txt: unsupported file type '\.txt'"):
        read_source(path)


def test_read_document_reads_one_json_or_yaml_document(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: g\nlayers: [{op: conv, kernel: [3, 5]}]\n")
    assert read_document(grid) == {"name": "g", "layers": [{"op": "conv", "kernel": [3, 5]}]}
    two = tmp_path / "two.yaml"
    two.write_text("a: 1\n---\nb: 2\n")
    with pytest.raises(rfsearch.SpecError, match="expected one YAML document, found 2"):
        read_document(two)
    with pytest.raises(rfsearch.SpecError, match="no such file"):
        read_document(tmp_path / "missing.json")
    twice = tmp_path / "twice.json"
    twice.write_text('{"name": "g", "layers": [{"op": "conv", "kernel": [3], "kernel": [5]}]}')
    with pytest.raises(rfsearch.SpecError, match=r"twice\.json: key 'kernel' is given twice"):
        read_document(twice)


def test_a_key_given_twice_costs_its_spec_not_the_last_value_silently(tmp_path):
    """json and PyYAML keep a repeated key's last value; a spec that repeats one is refused,
    and only that spec. YAML's merge keys may still be overridden."""
    conv = '{"op": "conv", "kernel": 3}'
    (tmp_path / "a.json").write_text(
        f'[{{"name": "a", "layers": [{{"op": "conv", "kernel": 3, "kernel": 5}}]}},'
        f' {{"name": "b", "layers": [{conv}]}}]')
    (tmp_path / "a.jsonl").write_text(
        f'{{"name": "a", "name": "z", "layers": [{conv}]}}\n{{"name": "b", "layers": [{conv}]}}\n')
    (tmp_path / "a.yaml").write_text(
        "- name: a\n  layers:\n  - {op: conv, kernel: 3, kernel: 5}\n"
        "- &base {name: b, layers: [{op: conv, kernel: 3}]}\n- {<<: *base, name: c}\n")
    for path, message in (("a.json", "spec #0 'a', layer #0: key 'kernel' is given twice in "
                                     "one object"),
                          ("a.jsonl", "spec #0 'z': key 'name' is given twice in one object"),
                          ("a.yaml", "spec #0 'a', layer #0: key 'kernel' is given twice in one "
                                     "mapping (line 3)")):
        df = rfsearch.evaluate(tmp_path / path)
        assert df["error"][0] == f"{tmp_path / path}: {message}"
        assert df["rf_h"].tolist()[1:] == [3] * (len(df) - 1) and len(df) >= 2


# --- resolve: whatever a user passes ---------------------------------------------------------

def test_resolve_a_dict_and_a_list_of_dicts():
    (src,) = resolve(CONV3)
    assert (src.label, names(src), src.total) == (None, ["c3"], 1)
    (src,) = resolve([CONV3, CONV5])
    assert names(src) == ["c3", "c5"] and positions(src) == [0, 1]


def test_a_bad_spec_costs_one_error_entry_not_the_source():
    (src,) = resolve([CONV3, BAD, "not a spec", CONV5])
    assert names(src) == ["c3", "c5"] and positions(src) == [0, 3] and src.total == 4
    assert [(i, name) for i, name, _ in src.errors] == [(1, "bad"), (2, None)]
    assert src.errors[1][2] == "spec #2: a spec must be an object, got str"
    df = rfsearch.evaluate([CONV3, BAD, CONV5])
    assert df["error"].notna().tolist() == [False, True, False]


def test_resolve_paths_one_source_per_file(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.yaml"
    a.write_text(json.dumps(CONV3))
    b.write_text(yaml.safe_dump([CONV5, CONV3]))
    (src,) = resolve(str(a))
    assert src.label == str(a) and names(src) == ["c3"]
    (src,) = resolve(a)  # a Path
    assert src.label == str(a)
    sources = resolve([a, str(b)])
    assert [s.label for s in sources] == [str(a), str(b)]
    assert [names(s) for s in sources] == [["c3"], ["c5", "c3"]]


def test_a_missing_file_is_one_error_row_with_a_one_line_message(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(CONV3))
    missing = tmp_path / "missing.json"
    sources = resolve([good, missing])
    assert len(sources) == 2
    gone = sources[1]
    assert (gone.label, gone.networks, gone.total) == (str(missing), [], 1)
    assert gone.errors == [(0, str(missing), f"{missing}: no such file")]
    df = rfsearch.evaluate([good, missing])
    assert df["error"].isna().tolist() == [True, False]
    assert df["name"][1] == str(missing)  # the row stands for the file
    assert df["error"][1] == f"{missing}: no such file"


def test_resolve_zoo_references():
    (src,) = resolve("zoo:resnet18")
    assert src.label == "zoo:resnet18" and names(src) == ["resnet18"] and not src.errors
    sources = resolve(["zoo:vgg_16", "zoo:nope"])
    assert names(sources[0]) == ["vgg_16"]
    assert sources[1].errors[0][2].startswith("unknown zoo network 'nope'")


def test_resolve_a_batch_and_tables_of_chains():
    batch = rfsearch.chains([[3, 3], [5, 1]])
    (src,) = resolve(batch)
    assert src.batch is batch and list(src.index) == [0, 1] and src.total == 2 and not src.errors
    frame = pd.DataFrame({"name": ["x", "y"], "kernel": [[3, 3], [5]]})
    for table in (frame, pa.Table.from_pandas(frame)):
        (src,) = resolve(table)
        assert src.label == "<table>" and src.batch.names.tolist() == ["x", "y"]
        assert rfsearch.evaluate(src.batch)["rf_h"].tolist() == [5, 5]
