"""``search``: walk or sample a space on the device, filter there, stream matches to Parquet.

Exhaustive mode walks the id range in chunks of whole suffix spans (see
:func:`rfsearch.search.walk.walk`); sampling mode takes consecutive positions of a
seeded random permutation of the ids (:func:`~.sampling.sample_ids`), so chunks never
overlap and any chunk can be recomputed alone. Only the rows that pass ``where`` (or
the chunk's top K) are decoded and leave the device.

Output folder: ``part-NNNNNN.parquet`` files, each holding the matches of consecutive
chunks (NNNNNN: the first), and ``_manifest.json``, rewritten atomically after each part,
naming the finished chunks and the run's parameters. Re-running the same command
resumes: finished chunks are skipped, and a part written but not yet recorded starts at
the first unfinished chunk, so it is rewritten: no candidate is lost or duplicated.

Several processes (``process``, :mod:`.cluster`) each evaluate one contiguous block of
the chunks into the same folder, each keeping its own record of the manifest
(:mod:`.manifest`); once every chunk is recorded the dataset is completed, and is then
the one a single process writes.

:func:`search` is three steps: :func:`prepare` checks the options and builds the run,
:func:`chunk_loop` evaluates the chunks into a sink, and the sink
(:class:`~.output.Writer` or :class:`~.output.Collector`) finishes the output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from ..axes import parse_input_sizes, size_for
from ..errors import SpecError
from ..spaces.registry import resolve_space
from ..spaces.space import Space, fitted_size
from ..spec import parse_input_size
from ..table import COLUMNS, SEARCH_COLUMNS, search_result
from .cluster import resolve_process
from .device_run import DeviceRun
from .filter import parse_filter
from .host_run import HostRun
from .output import Collector, Writer
from .runs import Run

DEFAULT_CHUNK = 1 << 22  # candidates per device call on CPUs
ACCELERATOR_CHUNK = 1 << 25  # on accelerators: a call must keep thousands of cores busy


def default_chunk() -> int:
    """Candidates per device call when the caller does not choose: the default device's."""
    return DEFAULT_CHUNK if jax.default_backend() == "cpu" else ACCELERATOR_CHUNK


@dataclass
class SearchSummary:
    """What a run did: candidates covered, rows in the output, chunks, seconds, where.
    Over several processes: ``candidates`` and ``chunks`` are this process's share,
    ``process`` is (index, count), and ``matches`` counts the rows in the output when
    ``complete`` (the dataset is finished), else the rows this process wrote."""

    space: str
    candidates: int
    matches: int
    chunks: int
    seconds: float
    output: str | None
    process: tuple[int, int] = (0, 1)
    complete: bool = True
    resumed: int = 0  # chunks of this share that an earlier run had finished


def filter_schema(space: Space) -> dict[str, str]:
    """The columns of a search's rows with their types ('bool', 'number' or 'text': a
    ``where`` filter compares numbers and booleans)."""
    declared = {**COLUMNS, **SEARCH_COLUMNS}
    kinds = {pa.bool_(): "bool", pa.string(): "text"}
    schema = {c: kinds.get(declared[c][0], "number") for c in search_result(space.dims == 3)}
    schema |= dict.fromkeys(space.id_aliases, "number")
    schema |= {var.name: "number" if var.numeric else "text" for var in space.variables}
    return schema


def _positive(name: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise SpecError(f"{name} must be a positive integer, got {value!r}")


def _integer(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _id_range(ids) -> tuple[int, int] | None:
    """``ids`` as (start, stop) Python ints (the range itself is checked by the run)."""
    if ids is None:
        return None
    if isinstance(ids, str | bytes) or not hasattr(ids, "__len__") or len(ids) != 2 \
            or not all(_integer(v) for v in ids):
        raise SpecError(f"ids must be (start, stop), two integers, got {ids!r}")
    return int(ids[0]), int(ids[1])


def _columns(partition_by) -> tuple[str, ...]:
    """``partition_by`` as distinct column names (one name or a sequence of them)."""
    if isinstance(partition_by, str):
        return (partition_by,)
    if not isinstance(partition_by, list | tuple) or not all(
            isinstance(c, str) for c in partition_by):
        raise SpecError(f"partition_by must be a column name or a list of them, got "
                        f"{partition_by!r}")
    twice = next((c for i, c in enumerate(partition_by) if c in partition_by[:i]), None)
    if twice is not None:
        raise SpecError(f"partition_by names {twice!r} twice")
    return tuple(partition_by)


API_NAMES = {"top": "top", "by": "by", "ascending": "ascending", "partition_by": "partition_by",
             "output": "output"}


def option_conflict(top, by, ascending, partition_by, output, names=API_NAMES) -> str | None:
    """Options of :func:`search` that do not go together, in one line spelt with ``names``
    (the command line spells them as its options), or None."""
    t, b, a, p, o = (names[k] for k in ("top", "by", "ascending", "partition_by", "output"))
    if (top is None) != (by is None):
        return f"{t} and {b} go together: {t} K {b} COLUMN keeps the K best rows"
    if ascending and top is None:
        return f"{a} orders {t}: give {t} K {b} COLUMN with it"
    if partition_by and (output is None or top is not None):
        return f"{p} needs {o} and no {t}"
    return None


def prepare(space, *, output=None, where=None, sample=None, seed=0, input_size=None,
            chunk=None, top=None, by=None, ascending=False, ids=None,
            partition_by=()) -> Run:
    """Check the options of :func:`search` (one line per problem) and build its run."""
    space_obj, default_where = resolve_space(space)
    where_text = where if where is not None else default_where
    if isinstance(where_text, str) and not where_text.strip():
        where_text = ""  # blank: no filter, not even the space's own
    schema = filter_schema(space_obj)
    node = parse_filter(where_text, schema) if where_text != "" and where_text is not None \
        else None
    for name, value in (("chunk", chunk), ("sample", sample), ("top", top)):
        _positive(name, value)
    if not _integer(seed) or seed < 0:
        raise SpecError(f"seed must be a non-negative integer, got {seed!r}")
    seed, ids = int(seed), _id_range(ids)
    chunk = default_chunk() if chunk is None else chunk
    conflict = option_conflict(top, by, ascending, partition_by, output)
    if conflict is not None:
        raise SpecError(conflict)
    if by is not None and schema.get(by) != "number":
        raise SpecError(f"by must name a numeric column, got {by!r}")
    top_spec = None if top is None else (by, top, not ascending)
    size = None
    if input_size is not None:  # per candidate: any axes (N, HxW, DxHxW); tabulated: 2-D
        size = fitted_size(space_obj.name, space_obj.dims, input_size) if \
            space_obj.per_candidate else parse_input_size(size_for(parse_input_sizes(
                input_size), 2))
    partition = _columns(partition_by)
    choices = {v.name for v in space_obj.variables}
    for column in partition:
        if column not in choices:
            raise SpecError(f"partition_by: {column!r} is not a choice column of "
                            f"{space_obj.name!r} (choices: {', '.join(sorted(choices))})")
    kind = HostRun if space_obj.per_candidate else DeviceRun
    return kind(space_obj, size, node, where_text, sample, seed, chunk, top_spec, ids,
                partition)


def chunk_loop(run: Run, sink, progress: bool, share: range | None = None) -> None:
    """Evaluate every chunk of ``share`` (default: all) the sink has not finished, in
    order, into the sink."""
    share = range(run.chunks) if share is None else share
    matches = 0
    run.expect([c for c in share if c not in sink.done])
    with tqdm(total=sum(map(run.count_of, share)), unit="cand", unit_scale=True,
              disable=not progress, desc=run.space.name) as bar:
        try:
            for c in share:
                count = run.count_of(c)
                if c in sink.done:
                    sink.skip(c)
                    bar.update(count)
                    continue
                ids = run.matches(c)
                df = run.rows(ids) if ids.size else None
                matches += 0 if df is None else len(df)
                sink.add(c, df)
                bar.update(count)
                bar.set_postfix(matches=matches)
        finally:
            run.close()


def search(space, *, output=None, where: str | None = None, sample: int | None = None,
           seed: int = 0, input_size=None, chunk: int | None = None, top: int | None = None,
           by: str | None = None, ascending: bool = False, ids: tuple[int, int] | None = None,
           partition_by=(), progress: bool = False, process=None):
    """Evaluate a space (built-in name, grid file or dict, or :class:`Space`).

    Without ``output`` returns a DataFrame of the matching rows (for spaces small
    enough to hold); with ``output`` writes a Parquet dataset folder and returns a
    :class:`SearchSummary`. ``where``: filter expression (default: the grid's own);
    ``sample``: draw that many distinct ids (seeded) instead of walking all; ``top``/``by``:
    keep the K rows with the largest (``ascending``: smallest) ``by``; ``ids``: only the
    candidates in ``[start, stop)`` (walked, or sampled from); ``partition_by``: choice
    columns to hive-partition the output folder by (``col=value/`` directories);
    ``chunk``: candidates per device call (None: :func:`default_chunk`); ``process``:
    ``(index, count)``, this process's share of a search run by ``count`` processes into
    the same ``output`` (default: the JAX runtime's, one process unless
    ``jax.distributed`` is initialized; see :mod:`rfsearch.search.cluster`).
    The rows follow :func:`rfsearch.table.search_schema`.
    """
    run = prepare(space, output=output, where=where, sample=sample, seed=seed,
                  input_size=input_size, chunk=chunk, top=top, by=by, ascending=ascending,
                  ids=ids, partition_by=partition_by)
    proc = resolve_process(process, output)
    if output is None:
        sink = Collector(run)
        chunk_loop(run, sink, progress)
        return sink.finish()
    folder, share = Path(output), proc.share(run.chunks)
    if folder.exists() and not folder.is_dir():
        raise SpecError(f"{output}: cannot write the output: not a folder")
    sink = Writer(folder, run, proc)
    t0 = time.perf_counter()
    resumed = sum(c in sink.done for c in share)
    chunk_loop(run, sink, progress, share)
    rows, complete = sink.finish()
    return SearchSummary(run.space.name, sum(map(run.count_of, share)), rows, len(share),
                         time.perf_counter() - t0, str(folder), (proc.index, proc.count),
                         complete, resumed)
