"""One search over several processes: which chunks each process takes, and JAX's own
multi-process runtime (``jax.distributed``) to find out who is who.

Process ``index`` of ``count`` takes one contiguous block of the run's chunks,
``[index * chunks // count, (index + 1) * chunks // count)`` (:func:`share`): a
deterministic function of the chunk, the process count and the process id, so any
process can be run again alone, and its part files hold consecutive chunks as a single
run's do. Every process writes into the one output folder (:mod:`.manifest` keeps a
record per process; once every chunk is recorded the dataset is completed).

A :class:`Process` comes from the runtime (``jax.distributed.initialize``, called by the
command line or by the caller: every process then runs the same search, and the
processes meet at a barrier before process 0 completes the dataset), or is given as
``(index, count)`` without any runtime (independent processes: a job array, or one
process's share run again alone; the last one to finish completes the dataset).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from ..errors import SpecError

BARRIER = "rfsearch.search: every share is recorded"


@dataclass(frozen=True)
class Process:
    """This process's place in a search: ``index`` of ``count``; ``synced``: the JAX
    runtime connects the processes (they meet at a barrier before finishing)."""

    index: int = 0
    count: int = 1
    synced: bool = False

    def share(self, chunks: int) -> range:
        """The chunks this process evaluates."""
        return share(chunks, self.count, self.index)


SINGLE = Process()


def share(chunks: int, count: int, index: int) -> range:
    """Process ``index`` of ``count``: one contiguous block of ``chunks`` chunks (the
    blocks of all processes cover every chunk once, in order)."""
    return range(index * chunks // count, (index + 1) * chunks // count)


def _runtime() -> tuple[int, int]:
    """(process index, process count) of the JAX runtime (0, 1 without jax.distributed)."""
    import jax

    return jax.process_index(), jax.process_count()


def _checked(process) -> tuple[int, int]:
    try:
        index, count = process
    except (TypeError, ValueError):
        raise SpecError(f"process must be (index, count), got {process!r}") from None
    for name, value in (("process index", index), ("process count", count)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SpecError(f"{name} must be a non-negative integer, got {value!r}")
    if not 0 <= index < count:
        raise SpecError(f"process index must be below the process count ({count}), "
                        f"got {index}")
    return index, count


def resolve_process(process, output) -> Process:
    """The :class:`Process` of a search: ``None`` is the JAX runtime's (one process unless
    ``jax.distributed`` was initialized; without an output folder always one), else an
    ``(index, count)`` pair, synced when the runtime has exactly these processes."""
    if process is None:
        if output is None:
            return SINGLE
        index, count = _runtime()
        return Process(index, count, True) if count > 1 else SINGLE
    index, count = _checked(process)
    if count > 1 and output is None:
        raise SpecError("a search over several processes writes one output folder: give "
                        "output (-o)")
    if count == 1:
        return SINGLE
    return Process(index, count, _runtime() == (index, count))


def barrier() -> None:
    """Wait until every process of the JAX runtime gets here."""
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(BARRIER)


def detected_cluster() -> str | None:
    """The cluster JAX's own detection finds (SLURM job steps, TPU pods, Open MPI,
    Kubernetes), when it runs more than one process; None on a plain machine."""
    try:
        from jax._src.clusters import ClusterEnv

        with warnings.catch_warnings():  # a Kubernetes pod without the kubernetes package
            warnings.simplefilter("ignore")
            env = next((e for e in ClusterEnv._cluster_types
                        if not e.opt_in_only_method and e.is_env_present()), None)
            count = env.get_process_count() if env is not None else 1
    except Exception:  # private API of JAX: detection is a convenience, never an error
        return None
    return env.name if count > 1 else None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> tuple[int, int]:
    """``jax.distributed.initialize`` with these arguments (None: detected from the
    cluster); returns (process index, process count). Waits for every process."""
    import jax

    try:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    except Exception as err:  # JAX raises several kinds: one line for each
        where = coordinator or "the detected cluster"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpecError(f"jax.distributed.initialize ({where}): {first}") from None
    return _runtime()
