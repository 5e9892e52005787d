"""``rfsearch search`` over several processes: the ``jax.distributed`` options, their
checks (one line each), the runtime's start, and the summary line of one process.

``--coordinator HOST:PORT --num-processes N --process-id I`` start JAX's multi-process
runtime (``jax.distributed.initialize``) before the search; without them, on a cluster
JAX detects (a SLURM job step, a TPU pod, Open MPI, Kubernetes) with more than one
process, the runtime starts from the cluster's own variables. ``--num-processes N
--process-id I`` without ``--coordinator`` run process I's share alone, with no runtime
(a job array, or one killed process run again).
"""

from __future__ import annotations

import argparse

from .errors import SpecError
from .search.cluster import detected_cluster, initialize


def cluster_options(parser: argparse.ArgumentParser, positive, non_negative) -> None:
    """The options of a search over several processes (``positive``, ``non_negative``:
    the CLI's parsers of integers)."""
    group = parser.add_argument_group(
        "several processes", "one search, each process a contiguous block of the chunks, "
        "into one -o folder (JAX's multi-process runtime; detected on SLURM and TPU pods)")
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help="address of process 0 (jax.distributed.initialize)")
    group.add_argument("--num-processes", type=positive, metavar="N",
                       help="how many processes run the search")
    group.add_argument("--process-id", type=non_negative, metavar="I",
                       help="this process, 0 .. N-1 (without --coordinator: its share "
                            "alone, no runtime)")


def _check(args) -> None:
    coordinator, count, index = args.coordinator, args.num_processes, args.process_id
    if coordinator is not None and (count is None or index is None):
        raise SpecError("--coordinator needs --num-processes and --process-id")
    if (count is None) != (index is None):
        raise SpecError("--num-processes and --process-id go together")
    if args.output is None:
        raise SpecError("a search over several processes writes one output folder: give -o")
    if index >= count:
        raise SpecError(f"--process-id must be below --num-processes ({count}), got {index}")
    if coordinator is not None:
        host, sep, port = coordinator.rpartition(":")
        if not (host and sep and port.isascii() and port.isdigit()
                and 0 < int(port) < 65536):
            raise SpecError(f"--coordinator must be HOST:PORT (a port from 1 to 65535), got "
                            f"{coordinator!r}")


def process_of(args) -> tuple[int, int] | None:
    """This process's ``(index, count)`` for :func:`rfsearch.search` (starting the JAX
    runtime where asked or detected), or None for a single process."""
    given = (args.coordinator, args.num_processes, args.process_id)
    if given == (None, None, None):
        if args.output is None or detected_cluster() is None:
            return None
        return initialize()
    _check(args)
    if args.coordinator is None:
        return args.process_id, args.num_processes
    return initialize(args.coordinator, args.num_processes, args.process_id)


def summary(result) -> str:
    """The line ``rfsearch search -o`` ends with."""
    head = f"{result.space}: {result.candidates} candidates"
    if result.process[1] == 1 and result.complete and result.resumed == result.chunks:
        return f"{head}: {result.output} was already complete ({result.matches} rows); " \
               "nothing to do"
    if result.process[1] == 1 and result.complete and result.resumed:
        return f"{head}, resumed ({result.resumed} of {result.chunks} chunks were done): " \
               f"{result.output} is complete with {result.matches} rows after " \
               f"{result.seconds:.1f} s"
    if result.process[1] == 1:
        return f"{head}, {result.matches} rows written to {result.output} in " \
               f"{result.seconds:.1f} s"
    index, count = result.process
    head = f"{result.space}: process {index} of {count}: {result.candidates} candidates"
    if result.complete:
        return f"{head} in {result.seconds:.1f} s; {result.output} is complete: " \
               f"{result.matches} rows"
    return f"{head}, {result.matches} rows written to {result.output} in " \
           f"{result.seconds:.1f} s; the dataset is complete once every process has finished"
