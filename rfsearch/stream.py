"""Parquet to Parquet in bounded memory: a chain table is read one record batch at a
time, each batch evaluated and written as row groups before the next is read, so memory
depends on the batch, not the file. Rows keep the file's order, default names and error
locations count rows across the whole file, and the output is the table ``evaluate``
would give."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .axes import parse_input_sizes
from .errors import SpecError
from .evaluate import check_chunk_size, source_frame
from .sources import read_chain_source
from .table import PARQUET, check_writable, to_arrow

BATCH_ROWS = 1 << 20  # chains per record batch: a few hundred MB of working memory


def evaluate_parquet(source, output, *, input_size=None, per_layer: bool = False,
                     analysis: bool = False, exempt_1x1: bool = False,
                     batch_rows: int = BATCH_ROWS, progress: bool = False,
                     messages: int = 20, chunk_size: int | None = None
                     ) -> tuple[int, int, list[str]]:
    """Evaluate the chain table ``source`` (Parquet) into the Parquet file ``output`` one
    record batch of ``batch_rows`` at a time, ``chunk_size`` chains per kernel call (as in
    :func:`~rfsearch.evaluate`); returns (rows written, rows with an error, the first
    ``messages`` distinct error messages)."""
    check_chunk_size(chunk_size)
    label = str(source)
    check_writable(output, reads=[source], suffix=PARQUET)
    try:
        reader = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as err:
        raise SpecError(f"{label}: not a readable Parquet file ({err})") from None
    sizes = parse_input_sizes(input_size)
    options = {"exempt_1x1": bool(exempt_1x1)} if analysis else None
    bar = _bar(reader.metadata.num_rows, progress)
    partial = Path(output).with_name(f".{Path(output).name}.partial")  # renamed when done
    writer, written, failed, offset, seen = None, 0, 0, 0, []
    try:
        for batch in _batches(reader, batch_rows, label):
            src = read_chain_source(pa.Table.from_batches([batch]), label=label,
                                    offset=offset)
            df = source_frame(src, sizes, per_layer, chunk_size, False, options)
            table = to_arrow(df)
            if writer is None:
                writer = pq.ParquetWriter(str(partial), table.schema, compression="zstd")
            writer.write_table(table, row_group_size=BATCH_ROWS)
            errors = df["error"].dropna()
            written, failed = written + len(df), failed + len(errors)
            seen += [m for m in errors.drop_duplicates().iloc[:messages] if m not in seen]
            offset += batch.num_rows
            bar.update(batch.num_rows)
        writer.close()  # set: _batches yields at least one batch
        os.replace(partial, output)
    except BaseException:  # a failed or interrupted run leaves no output that looks done
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    return written, failed, seen[:messages]


def _batches(reader: pq.ParquetFile, rows: int, label: str):
    """The file's record batches (one empty batch for a table without rows, so that the
    output has the result's columns); a read error names the file."""
    try:
        if reader.metadata.num_rows == 0:
            yield from reader.schema_arrow.empty_table().to_batches() or [
                pa.RecordBatch.from_pylist([], schema=reader.schema_arrow)]
            return
        yield from reader.iter_batches(batch_size=rows)
    except (pa.ArrowException, OSError) as err:
        raise SpecError(f"{label}: not a readable Parquet file ({err})") from None


def streamable(specs, output) -> bool:
    """Whether ``rfsearch eval`` can stream: one Parquet chain table into a Parquet file."""
    return output is not None and len(specs) == 1 and Path(specs[0]).suffix.lower() == \
        PARQUET and Path(specs[0]).is_file()


def _bar(total: int, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="chain", unit_scale=True, disable=not progress,
                desc="evaluate")
