"""``rfsearch eval`` on a chain table streams: a record batch at a time, the same rows as
``evaluate`` (order, default names, error locations counted over the whole file)."""

from __future__ import annotations

import os
import signal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rfsearch
from rfsearch.cli import main
from rfsearch.stream import evaluate_parquet


@pytest.fixture
def chain_file(tmp_path):
    """1,000 ragged chains, two of them invalid, names on some rows only."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 12, 1000)
    kernel = [rng.integers(1, 6, n).tolist() for n in lengths]
    stride = [rng.integers(1, 3, n).tolist() for n in lengths]
    kernel[7], stride[7] = [3, 0, 2], [1, 1, 1]  # kernel 0: invalid
    kernel[612] = [3] * len(stride[612])
    stride[612] = [-1] * len(stride[612])  # a negative stride: invalid
    names = [f"net{i}" if i % 3 == 0 else None for i in range(1000)]
    path = tmp_path / "chains.parquet"
    pq.write_table(pa.table({"kernel": kernel, "stride": stride, "name": names}), path)
    return path


@pytest.mark.parametrize("per_layer, analysis", [(False, False), (True, False),
                                                 (False, True)])
def test_streamed_rows_equal_evaluate(chain_file, tmp_path, per_layer, analysis):
    out = tmp_path / "out.parquet"
    rows, failed, messages = evaluate_parquet(chain_file, out, input_size=64,
                                              per_layer=per_layer, analysis=analysis,
                                              batch_rows=128)
    got = pd.read_parquet(out)
    want = rfsearch.evaluate(str(chain_file), input_size=64, per_layer=per_layer,
                             analysis=analysis)
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_dtype=False)
    assert rows == len(want) and failed == int(want["error"].notna().sum())
    assert messages == want["error"].dropna().drop_duplicates().tolist()[:20]
    assert got["error"].str.contains("spec #612").any()  # counted over the whole file
    assert pq.ParquetFile(out).metadata.num_row_groups == -(-1000 // 128)


def test_eval_streams_a_chain_table_into_parquet(chain_file, tmp_path, capsys):
    out = tmp_path / "out.parquet"
    assert main(["eval", str(chain_file), "-o", str(out), "--input-size", "64"]) == 1
    err = capsys.readouterr().err.splitlines()
    want = rfsearch.evaluate(str(chain_file), input_size=64)
    assert err[0] == f"wrote 1000 rows ({want['error'].isna().sum()} valid) to {out}"
    assert all(line.startswith("rfsearch: ") for line in err[1:])
    assert pd.read_parquet(out)["name"].tolist()[:4] == ["net0", "chain1", "chain2", "net3"]



def test_eval_streaming_takes_chunk_size(chain_file, tmp_path, monkeypatch):
    """--chunk-size was ignored when eval streamed a chain table."""
    import rfsearch.stream as stream

    seen, real = [], stream.source_frame

    def spy(src, sizes, per_layer, chunk_size, progress, options):
        seen.append(chunk_size)
        return real(src, sizes, per_layer, chunk_size, progress, options)

    monkeypatch.setattr(stream, "source_frame", spy)
    out = tmp_path / "out.parquet"
    main(["eval", str(chain_file), "-o", str(out), "--input-size", "64", "--chunk-size",
          "256"])
    assert seen == [256]
    want = rfsearch.evaluate(str(chain_file), input_size=64)
    pd.testing.assert_frame_equal(pd.read_parquet(out), want, check_dtype=False)
    with pytest.raises(rfsearch.SpecError, match="chunk_size must be a positive integer"):
        evaluate_parquet(chain_file, tmp_path / "x.parquet", chunk_size=0)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_terminated_or_interrupted_eval_is_one_line_and_leaves_no_file(
        chain_file, tmp_path, monkeypatch, capsys, signum):
    """SIGTERM left the hidden partial output behind; Ctrl-C printed a traceback."""
    import rfsearch.stream as stream

    real, calls = stream.source_frame, []

    def stopped_at_the_third_batch(*args):
        calls.append(1)
        if len(calls) == 3:  # two record batches written to the partial file
            os.kill(os.getpid(), signum)
        return real(*args)

    monkeypatch.setattr(stream, "source_frame", stopped_at_the_third_batch)
    monkeypatch.setitem(stream.evaluate_parquet.__kwdefaults__, "batch_rows", 128)
    handler = signal.getsignal(signal.SIGTERM)
    code = main(["eval", str(chain_file), "-o", str(tmp_path / "out.parquet"), "-q"])
    assert code == 128 + signum
    assert capsys.readouterr().err == "rfsearch: interrupted\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chains.parquet"]
    assert signal.getsignal(signal.SIGTERM) is handler  # restored

def test_an_empty_table_gives_an_empty_result_and_an_unreadable_one_a_line(tmp_path):
    """As evaluate does: no rows is a table of no rows (with the result's columns), not an
    error; a file that breaks part way leaves no output that looks finished."""
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"kernel": pa.array([], pa.list_(pa.int32()))}), empty)
    assert evaluate_parquet(empty, tmp_path / "out.parquet") == (0, 0, [])
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.num_rows == 0 and out.schema.names == list(rfsearch.evaluate(
        {"name": "n", "layers": [{"op": "conv", "kernel": 3}]}).columns)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(rfsearch.SpecError, match="not a readable Parquet file") as err:
        evaluate_parquet(bad, tmp_path / "out.parquet")
    assert "\n" not in str(err.value)
    broken = tmp_path / "broken.parquet"  # its second row group is damaged
    pq.write_table(pa.table({"kernel": [[3, 3]] * 4096}), broken, row_group_size=2048,
                   compression="snappy")
    data = bytearray(broken.read_bytes())
    second = pq.ParquetFile(broken).metadata.row_group(1).column(0)
    start = second.data_page_offset
    data[start + 20:start + 60] = bytes(40)
    broken.write_bytes(bytes(data))
    with pytest.raises(rfsearch.SpecError, match=r"broken.parquet: not a readable Parquet"):
        evaluate_parquet(broken, tmp_path / "part.parquet", batch_rows=2048)
    assert list(tmp_path.glob("*part.parquet*")) == []


def test_the_output_names_a_parquet_file(chain_file, tmp_path, capsys):
    assert main(["eval", str(chain_file), "-o", str(tmp_path / "out.csv")]) == 1
    assert capsys.readouterr().err.endswith("out.csv: the output is written as Parquet: "
                                            "name it out.parquet\n")
    assert main(["eval", str(chain_file), "-o", f"{tmp_path / 'new'}/"]) == 1
    assert "it names a folder, not a file" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_the_output_is_checked_before_reading(chain_file, tmp_path, capsys):
    """Writing onto the input table would destroy it while it is read; a folder or a
    missing folder is one line from the API too (IsADirectoryError and FileNotFoundError
    before)."""
    before = chain_file.read_bytes()
    assert main(["eval", str(chain_file), "-o", str(chain_file)]) == 1
    assert capsys.readouterr().err == (f"rfsearch: {chain_file}: cannot write the output: it "
                                       "is an input (write elsewhere)\n")
    assert chain_file.read_bytes() == before
    for output, words in ((tmp_path, "it names a folder"),
                          (tmp_path / "no" / "out.parquet", "no folder")):
        with pytest.raises(rfsearch.SpecError, match=f"cannot write the output: {words}"):
            evaluate_parquet(chain_file, output)
