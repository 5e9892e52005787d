"""Parquet output: one declared schema, metadata, readable by the usual tools."""

import json

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import rfsearch

EXAMPLES = "datasets/examples/classic.jsonl"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("pq") / "classic.parquet"
    df = rfsearch.evaluate([EXAMPLES], input_size=224)
    rfsearch.write_parquet(df, path)
    return path, df


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
