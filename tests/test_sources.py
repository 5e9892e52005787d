"""Where specs come from (rfsearch.sources): JSON, JSON Lines, YAML and Parquet chain
tables, ``resolve`` of whatever a user passes, and the one-line errors of files that
cannot be read. One bad spec costs one row, never the file."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rfsearch

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
    assert df["error"][0] == f"{path}: spec #0: stride has 1 entries, kernel has 2"
    pq.write_table(pa.table({"kernel": [[3, 0]]}), path)
    assert rfsearch.evaluate(path)["error"][0] == (
        f"{path}: spec #0, layer #1 'layer1': kernel must be a positive integer at most "
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
    unsigned = pa.table({"kernel": pa.array([[3, 3]], pa.list_(pa.uint64()))})
    assert rfsearch.evaluate(unsigned)["rf_h"].tolist() == [5]


def test_tables_of_chains_in_memory():
    import pandas as pd

    frame = pd.DataFrame({"name": ["a", "b"], "kernel": [[3, 3], [7]], "stride": [[1, 2], [2]]})
    from_pandas = rfsearch.evaluate(frame, input_size=32)
    from_arrow = rfsearch.evaluate(pa.Table.from_pandas(frame), input_size=32)
    assert from_pandas.equals(from_arrow)
    assert from_pandas["rf_h"].tolist() == [5, 7] and from_pandas["name"].tolist() == ["a", "b"]
