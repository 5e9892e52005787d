"""Result tables (rfsearch.table): the declared schemas of evaluate and search results,
typed nullable columns, and Parquet files with that schema and metadata, readable by the
usual tools."""

import json
from importlib.metadata import version

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import rfsearch
from rfsearch.spaces import grid_space
from rfsearch.table import search_schema, to_arrow, typed_array, write_parquet

EXAMPLES = "datasets/examples/classic.jsonl"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("pq") / "classic.parquet"
    df = rfsearch.evaluate([EXAMPLES], input_size=224)
    rfsearch.write_parquet(df, path)
    return path, df


def test_the_recorded_input_size_has_the_networks_axes():
    """224 was recorded as [224, 224] whatever the networks: a 1-D network evaluated at 100
    samples recorded [100, 100] (a 1-D search records [100])."""
    one = {"name": "a", "dims": 1, "layers": [{"op": "conv", "kernel": 3}]}
    two = {"name": "b", "layers": [{"op": "conv", "kernel": 3}]}
    three = {"name": "c", "dims": 3, "layers": [{"op": "conv", "kernel": 3}]}
    for specs, size, recorded in (([one], 100, [100]), ([two, two], 224, [224, 224]),
                                  ([three], 16, [16, 16, 16]), ([two, three], 224, [224]),
                                  ([two], (24, 32), [24, 32])):
        assert rfsearch.evaluate(specs, input_size=size).attrs["input_size"] == recorded


def test_schema_and_metadata(written):
    path, _ = written
    file = pq.ParquetFile(path)
    assert file.schema_arrow.remove_metadata() == rfsearch.schema().remove_metadata()
    meta = file.schema_arrow.metadata
    assert meta[b"rfsearch_version"] and meta[b"jax_version"]
    assert json.loads(meta[b"input_size"]) == [224, 224]
    assert set(json.loads(meta[b"columns"])) >= set(rfsearch.schema().names)
    assert file.metadata.row_group(0).column(1).compression == "ZSTD"
    assert file.schema_arrow.field("rf_h").metadata[b"description"].startswith(b"receptive")


def test_pandas_round_trip_keeps_nullable_dtypes(written):
    path, df = written
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, df, check_like=False)
    assert str(back["rf_h"].dtype) == "Int64" and str(back["aligned"].dtype) == "boolean"


def test_pyarrow_dataset_duckdb_polars(written):
    path, _ = written
    table = ds.dataset(str(path)).to_table(filter=ds.field("rf_h") > 300)
    assert table.column("name").to_pylist() == ["resnet18", "resnet50"]
    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(f"select name, rf_h from '{path}' where stride_h = 32 order by rf_h")
    assert rows.fetchall() == [("alexnet_v2", 195), ("vgg_16", 212), ("resnet50", 427),
                               ("resnet18", 435)]
    pl = pytest.importorskip("polars")
    frame = pl.read_parquet(path)
    assert frame.filter(pl.col("name") == "vgg_16")["padding_h"].to_list() == [90]


def test_per_layer_table_and_nulls(tmp_path):
    df = rfsearch.evaluate(EXAMPLES, per_layer=True)  # no input size: out null
    path = tmp_path / "layers.parquet"
    rfsearch.write_parquet(df, path)
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == rfsearch.schema(per_layer=True).remove_metadata()
    assert table.column("out_h").null_count == table.num_rows
    assert json.loads(table.schema.metadata[b"input_size"]) is None


def test_arrow_table_is_written_as_is(tmp_path):
    table = rfsearch.to_arrow(rfsearch.evaluate(EXAMPLES))
    assert isinstance(table, pa.Table)
    rfsearch.write_parquet(table, tmp_path / "t.parquet")
    assert pq.read_table(tmp_path / "t.parquet").num_rows == 4


# --- the declared schemas ------------------------------------------------------------------

GEOMETRY = [("rf_h", pa.int64()), ("rf_w", pa.int64()), ("rf_min_h", pa.int64()),
            ("rf_min_w", pa.int64()), ("stride_h", pa.int32()), ("stride_w", pa.int32()),
            ("stride_den_h", pa.int32()), ("stride_den_w", pa.int32()),
            ("period_h", pa.int32()), ("period_w", pa.int32()),
            ("padding_h", pa.int64()), ("padding_w", pa.int64()), ("aligned", pa.bool_()),
            ("out_h", pa.int32()), ("out_w", pa.int32())]
LAYER = [("layer", pa.int32()), ("layer_name", pa.string()), ("op", pa.string())]
ANALYSIS_LAYER = [("border", pa.bool_()), ("unproductive", pa.bool_()),
                  ("critical", pa.bool_())]
LAYERWISE = [("n_unproductive", pa.int32()), ("n_critical", pa.int32()),
             ("feasible_min", pa.int64()), ("feasible_max", pa.int64()),
             ("rf_at_stride_8", pa.int64()), ("rf_at_stride_16", pa.int64()),
             ("rf_at_stride_32", pa.int64())]
ANALYSIS_NETWORK = [("border_layer", pa.string()), *LAYERWISE, ("rf_ratio", pa.float64())]
NAME, ERROR = [("name", pa.string())], [("error", pa.string())]
PANDAS = {pa.int64(): "Int64", pa.int32(): "Int32", pa.bool_(): "boolean",
          pa.float64(): "Float64", pa.string(): "string"}


def fields(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    return [(f.name, f.type) for f in schema]


@pytest.mark.parametrize(("per_layer", "analysis", "want"), [
    (False, False, NAME + GEOMETRY + ERROR),
    (True, False, NAME + LAYER + GEOMETRY + ERROR),
    (False, True, NAME + GEOMETRY + ANALYSIS_NETWORK + ERROR),
    (True, True, NAME + LAYER + GEOMETRY + ANALYSIS_LAYER + ERROR),
])
def test_schema_order_types_and_descriptions(per_layer, analysis, want):
    schema = rfsearch.schema(per_layer=per_layer, analysis=analysis)
    assert fields(schema) == want
    assert all(f.metadata[b"description"] for f in schema)
    df = rfsearch.evaluate(rfsearch.zoo.build("resnet18"), input_size=64, per_layer=per_layer,
                           analysis=analysis)
    assert list(df.columns) == [name for name, _ in want]
    assert [str(df[name].dtype) for name, _ in want] == [PANDAS[t] for _, t in want]


def test_typed_array_nulls_follow_the_mask():
    ints = typed_array("rf_h", np.array([3, 99, 5]), np.array([False, True, False]))
    assert str(ints.dtype) == "Int64" and ints[1] is pd.NA and ints[2] == 5
    assert list(ints.isna()) == [False, True, False]
    small = typed_array("stride_h", [1, 2])  # no mask: no nulls
    assert str(small.dtype) == "Int32" and not small.isna().any()
    flags = typed_array("aligned", [True, False, True], [False, False, True])
    assert str(flags.dtype) == "boolean" and list(flags.isna()) == [False, False, True]
    assert flags[0] and not flags[1]
    ratio = typed_array("rf_ratio", [0.5, 2.0], [True, False])
    assert str(ratio.dtype) == "Float64" and ratio[0] is pd.NA and ratio[1] == 2.0
    text = typed_array("error", np.array([None, "bad"], dtype=object))
    assert pd.api.types.is_string_dtype(text.dtype) and text[0] is pd.NA and text[1] == "bad"
    ids = typed_array("candidate_id", [2**40])  # a search column
    assert str(ids.dtype) == "Int64" and ids[0] == 2**40


@pytest.mark.parametrize(("per_layer", "analysis"), [(False, False), (True, True)])
def test_round_trip_keeps_dtypes_and_metadata(tmp_path, per_layer, analysis):
    specs = [rfsearch.zoo.build("vgg_16"), {"name": "bad", "layers": [{"op": "conv"}]}]
    df = rfsearch.evaluate(specs, input_size=(32, 48), per_layer=per_layer, analysis=analysis)
    table = to_arrow(df)
    assert fields(table.schema) == fields(rfsearch.schema(per_layer, analysis))
    meta = table.schema.metadata
    assert meta[b"rfsearch_version"].decode() == version("rfsearch")
    assert json.loads(meta[b"input_size"]) == [32, 48]
    path = tmp_path / "t.parquet"
    write_parquet(df, path)
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, df)
    assert pq.read_schema(path).metadata[b"input_size"] == b"[32, 48]"
    assert back["rf_h"].isna().any() and back["error"].notna().any()  # nulls survive


def test_missing_result_columns_raise_a_spec_error(tmp_path):
    df = rfsearch.evaluate(rfsearch.zoo.build("resnet18"))
    with pytest.raises(rfsearch.SpecError, match=r"lacks the result columns \['rf_w'\]"):
        to_arrow(df.drop(columns="rf_w"))
    with pytest.raises(rfsearch.SpecError, match="lacks the result columns"):
        write_parquet(df.drop(columns=["error"]), tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_search_schema_order():
    keys = {"key_a": pa.string(), "key_b": pa.int64()}
    choices = {"layer0.kernel": pa.int64(), "layer1.op": pa.string()}
    head = [("candidate_id", pa.int64()), *keys.items(), *choices.items()]
    tail = [("valid", pa.bool_()), ("rf_ratio", pa.float64())]
    assert fields(search_schema(keys, choices)) == head + GEOMETRY + tail
    assert fields(search_schema(keys, choices, analysis=True)) == (
        head + GEOMETRY + tail + [("border_layer", pa.string())] + LAYERWISE)
    assert fields(search_schema({}, {})) == [("candidate_id", pa.int64()), *GEOMETRY, *tail]


MIXED = {"name": "mixed", "input_size": 32, "layers": [
    {"op": "conv", "kernel": [3, 5], "stride": [1, 2], "padding": "same"},
    {"op": "conv", "kernel": [1, [3, 1]]}]}


@pytest.mark.parametrize("where", [None, "valid and n_unproductive <= 1"])
def test_a_search_output_folder_has_the_declared_schema(tmp_path, where):
    space, _ = grid_space(MIXED)
    choices = {v.name: v.arrow_type for v in space.variables}
    assert choices == {"layer0.kernel": pa.int64(), "layer0.stride": pa.int64(),
                       "layer1.kernel": pa.string()}
    rfsearch.search(MIXED, output=tmp_path / "out", where=where)
    dataset = ds.dataset(tmp_path / "out", format="parquet")
    want = search_schema({}, choices, analysis=where is not None)
    assert fields(dataset.schema) == fields(want)
    assert [f.metadata for f in dataset.schema] == [f.metadata for f in want]
    assert dataset.count_rows() == len(rfsearch.search(MIXED, where=where)) > 0
    assert list(rfsearch.search(MIXED, where=where).columns) == want.names


def test_native_keys_come_between_the_id_and_the_choices(tmp_path):
    rfsearch.search("natsbench-sss", ids=(0, 40), output=tmp_path / "out")
    names = ds.dataset(tmp_path / "out", format="parquet").schema.names
    assert names[:8] == ["candidate_id", "sss_index", "sss_key", "C1", "C2", "C3", "C4", "C5"]
    assert names[8:] == [name for name, _ in GEOMETRY] + ["valid", "rf_ratio"]
