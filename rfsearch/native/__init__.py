"""The DAG recurrence and the periodic program as compiled XLA FFI custom calls, for CPUs.

XLA's CPU gather moves one element at a time, and the DAG programs of
:mod:`rfsearch.kernel` gather every input of every node of every network: measured, the
gather alone takes most of their time (benchmarks/kernel_anatomy.py times it alone).
``dag.cc`` computes the same recurrence for a tile of networks at a time (one vector
register of lanes), with their node states in the L1 cache, as an XLA custom call inside
the jitted program. It is compiled from source with the system's C++ compiler when a
batch of at least BUILD_MIN_ROWS DAGs first needs it (a few seconds, once per machine,
compiler and jaxlib version) into a cache directory; without a compiler, or with
``RFSEARCH_NATIVE=0``, the XLA program runs instead. Both compute the same numbers
(tests/test_native.py). The driver runs it where :func:`rfsearch.kernel.uses_native`
says it can (:func:`rfsearch.driver.choose_program`), with its arguments in tiles of
:func:`lanes` networks.

``periodic.cc``, in the same library, computes :func:`rfsearch.periodic.propagate` (the
exact program of networks with fractional jumps) one network at a time with its box
tables in the cache, instead of XLA's scan of gathers; :func:`periodic_states` calls it
and :func:`rfsearch.periodic_eval.program` chooses it by the same rule.

``chain.cc``, in the same library too, is the float32 program of plain chains as a plain
C function: :func:`chain_rows` runs it through ctypes on a Batch's own layer-major
arrays, with no transfer into XLA's buffers (for deep chains that copy took longer than
the recurrence), straight into the result arrays. The driver runs it on CPUs
(:func:`rfsearch.driver.choose_program`, ``kernel.NATIVE_CHAIN``).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from functools import cache, partial
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: concurrent first builds each compile, then one rename wins
    fcntl = None

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from .. import ops
from .. import recurrence as R
from ..cache import cache_dir
from ..periodic import WIDE
from ..reads import RESAMPLE, WHOLE, WINDOW

_log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("dag.cc")
PERIODIC_SOURCE = Path(__file__).with_name("periodic.cc")
CHAIN_SOURCE = Path(__file__).with_name("chain.cc")
TARGET, PERIODIC_TARGET = "rfsearch_dag", "rfsearch_periodic"
# -fwrapv: signed arithmetic wraps, as XLA's does; -march=native: the binary is built
# for, and cached per, this machine's CPU. -fno-trapping-math lets chain.cc's float loops
# be vectorised with their selects (no value changes: nothing here reads FP exceptions).
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fwrapv", "-march=native",
         "-fno-trapping-math")
SLOTS = (1, 2, 3, 4, 8)  # input slots per node the compiled kernel handles
ENV_SWITCH = "RFSEARCH_NATIVE"  # "0" turns the compiled kernel off

# dag.cc hard-codes these; a change on the Python side must not go unnoticed.
_CONSTANTS = (R.KNOWN, R.ALIGNED, R.UNBOUNDED, R.OVERFLOW, R.MISALIGNED, R.ERR_NONE,
              R.ERR_JUMP, R.ERR_SIZE, R.ERR_EMPTY, R.FAULT_CODES, R.NO_FAULT,
              ops.GLOBAL_POOL, ops.DENSE, ops.PAD_SAME_LOWER,
              R.LIMITS[np.dtype(np.int32)], R.LIMITS[np.dtype(np.int64)], R.MIXED,
              (WINDOW, RESAMPLE, WHOLE), WIDE)
_EXPECTED = (1, 2, 4, 8, 16, 0, 1, 2, 3, 4, 2**31 - 1, 7, 8, -2,
             (2**14, 2**29), (2**30, 2**61), 32, (0, 1, 2),
             ("k_eff", "s", "pb", "pa", "D", "mul", "add", "step"))


def compiler() -> str | None:
    """The C++ compiler: $CXX, else c++, g++ or clang++ on the PATH."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _sources() -> tuple[Path, ...]:
    """The sources compiled into the one library."""
    return SOURCE, PERIODIC_SOURCE, CHAIN_SOURCE


def _library_path(cxx: str) -> Path:
    """A cache path naming everything the binary depends on."""
    return cache_dir() / f"rfsearch_dag-{_key(_sources(), cxx, FLAGS)}.so"


@cache
def _key(sources: tuple[Path, ...], cxx: str, flags: tuple[str, ...]) -> str:
    key = hashlib.sha256()
    for part in (*(s.read_bytes() for s in sources), jaxlib.__version__.encode(), cxx.encode(),
                 " ".join(flags).encode(), platform.machine().encode(), _cpu().encode()):
        key.update(part)
        key.update(b"\0")
    return key.hexdigest()[:16]


CPU_FIELDS = ("model name", "flags", "Features", "CPU implementer", "CPU architecture",
              "CPU variant", "CPU part")  # /proc/cpuinfo on x86 and on ARM


def _cpu() -> str:
    """The CPU's model and features (-march=native builds for them)."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return f"{platform.processor()} {platform.platform()}"
    return "\n".join(sorted({line for line in info if line.startswith(CPU_FIELDS)}))


BUILD_TIMEOUT_S = 600
STALE_S = 3600  # a temporary file this old is left by a build that was killed
UNUSED_S = 30 * 86400  # a library no process has loaded for this long is pruned


def build(cxx: str) -> Path:
    """Compile dag.cc, periodic.cc and chain.cc (unless cached) and return the shared
    library's path. Raises CalledProcessError or TimeoutExpired when the compiler fails,
    OSError when the cache directory is not writable. Concurrent processes wait for one
    build (a lock file). A library's mtime is its last use: a new build removes the
    libraries (other sources, compilers or CPUs) unused for ``UNUSED_S``."""
    path = _library_path(cxx)
    if path.exists():
        _used(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():  # another process built it meanwhile
            return path
        for old in path.parent.glob("tmp*.so"):
            with contextlib.suppress(OSError):
                if time.time() - old.stat().st_mtime > STALE_S:
                    old.unlink()
        # compile next to the target and rename: a reader never sees a partial file
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
        os.close(fd)
        start = time.perf_counter()
        try:
            subprocess.run([cxx, *FLAGS, f"-I{jax.ffi.include_dir()}", *map(str, _sources()),
                            "-o", tmp],
                           check=True, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
            os.chmod(tmp, 0o755)  # mkstemp's 0600 would hide it from other users of the cache
            os.replace(tmp, path)
            _log.info("compiled %s in %.1f s: %s", SOURCE.name, time.perf_counter() - start, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        prune(path)
    return path


def _used(path: Path) -> None:
    """Mark a cached library as used now (a read-only cache is left as it is)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def prune(keep: Path) -> None:
    """Remove the cached libraries beside ``keep`` (and their lock files) that no process
    has used for ``UNUSED_S``: builds for earlier sources or compilers, or for a CPU
    that no longer shares this cache."""
    now = time.time()
    for old in keep.parent.glob("rfsearch_dag-*.so"):
        with contextlib.suppress(OSError):
            if old != keep and now - old.stat().st_mtime > UNUSED_S:
                old.unlink()
                old.with_suffix(".lock").unlink(missing_ok=True)


_LOCK = threading.Lock()  # the driver's worker threads may ask at the same time
# the library registered in this process, its lanes, and chain.cc's function
_REGISTERED: list[tuple[Path, int, ctypes._CFuncPtr]] = []


BUILD_MIN_ROWS = 1 << 16  # smaller DAG batches run XLA's program rather than wait for a build


def available(rows: int | None = None) -> bool:
    """True when the compiled kernel is registered with XLA for the CPU backend. False
    without a compiler, on other backends, with RFSEARCH_NATIVE=0, or when the build
    fails (then with one warning naming the cause).

    The first call that needs it builds it (a few seconds, then cached on disk), unless
    ``rows`` (the networks about to be evaluated) is below BUILD_MIN_ROWS: a small batch
    is not worth the wait, so it then runs XLA's program (``rows=0``: never build, only
    load a cached build)."""
    with _LOCK:
        if _register.cache_info().currsize or rows is None or rows >= BUILD_MIN_ROWS:
            return _register()
        if os.environ.get(ENV_SWITCH, "1") == "0" or jax.default_backend() != "cpu":
            return False
        cxx = compiler()
        try:
            built = cxx is not None and _library_path(cxx).exists()
        except OSError:  # an unreadable source or cache directory: _register() would warn
            return False
        return built and _register()


@cache
def _register() -> bool:
    if os.environ.get(ENV_SWITCH, "1") == "0" or jax.default_backend() != "cpu":
        return False
    if _CONSTANTS != _EXPECTED:
        raise AssertionError("rfsearch/native/dag.cc is out of date with rfsearch.recurrence")
    cxx = compiler()
    if cxx is None:
        return False
    try:
        path = build(cxx)
        if not _REGISTERED:  # XLA keeps one handler per name for the process's lifetime
            library = ctypes.cdll.LoadLibrary(str(path))
            library.RfsearchDagLanes.restype = ctypes.c_int64
            lanes = int(library.RfsearchDagLanes())
            jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(library.RfsearchDag),
                                        platform="cpu")
            jax.ffi.register_ffi_target(PERIODIC_TARGET,
                                        jax.ffi.pycapsule(library.RfsearchPeriodic),
                                        platform="cpu")
            _REGISTERED.append((path, lanes, _chain_function(library)))
    except (OSError, AttributeError, subprocess.SubprocessError,
            jax.errors.JaxRuntimeError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        first = next((line for line in detail.splitlines() if "error" in line), detail)
        warnings.warn(f"rfsearch: compiled kernels unavailable, using XLA's ({first.strip()})",
                      RuntimeWarning, stacklevel=2)
        return False
    return True


def lanes() -> int:
    """Networks per tile of the registered kernel (one vector register of int32 lanes:
    16 with AVX-512, 8 with AVX2, else 4); the arguments are laid out in such tiles."""
    if not _REGISTERED:
        raise RuntimeError("rfsearch: the compiled DAG kernel is not registered")
    return _REGISTERED[0][1]


def _chain_function(library: ctypes.CDLL):
    """chain.cc's RfsearchChainRows with its argument types (ctypes releases the GIL
    during the call, so the driver's worker threads run it side by side)."""
    function = library.RfsearchChainRows
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    function.restype = ctypes.c_int
    function.argtypes = [*[ptr] * 5, i64, i64, i64, i64, i64, ctypes.c_int, ptr, i64, i64, i64,
                         *[ptr] * 7]
    return function


CHAIN_TYPES = (1, 2, 4, 8)  # bytes of the integer types chain.cc reads


def reads_chain(params: list) -> bool:
    """Whether chain.cc reads these layer-major [L, A, N] parameter arrays (kernel,
    stride, dilation, pad_before, pad_after: rfsearch.encode.PARAM_FIELDS) in place:
    numpy arrays of one signed integer type in native byte order, aligned, with the same
    strides, whole elements apart, each row contiguous."""
    first = params[0]
    if not all(isinstance(a, np.ndarray) for a in params):
        return False
    size = first.itemsize
    return (first.dtype.kind == "i" and first.dtype.isnative and size in CHAIN_TYPES
            and first.strides[-1] == size and all(s % size == 0 for s in first.strides)
            and all(a.dtype == first.dtype and a.shape == first.shape
                    and a.strides == first.strides and a.ctypes.data % size == 0
                    for a in params))


def chain_rows(params: list[np.ndarray], size: tuple[int, int] | None, rows: slice,
               out: dict[str, np.ndarray]) -> None:
    """The float32 chain program (:func:`rfsearch.kernel._plain_chain`) for networks
    ``rows`` (a slice with a start and a stop) of layer-major parameters ``params``
    (:func:`reads_chain`), at input ``size`` (None: unknown), written into ``out``: u, v,
    J, rmin, size, fault [A, N] int32 and flags [A, N] int8, rows contiguous. Rows flagged
    OVERFLOW are not exact (the driver computes them again in int64)."""
    first = params[0]
    layers, axes, _ = first.shape
    step = first.itemsize
    size0 = np.zeros(axes, np.float32) if size is None else np.asarray(size[:axes], np.float32)
    fields = [out[k] for k in ("u", "v", "J", "rmin", "size", "flags", "fault")]
    code = _REGISTERED[0][2](
        *(a.ctypes.data for a in params), step, layers, first.strides[0] // step,
        first.strides[1] // step, axes, int(size is not None), size0.ctypes.data, rows.start,
        rows.stop, fields[0].strides[0] // 4, *(f.ctypes.data for f in fields))
    if code:
        raise ValueError(f"chain.cc does not read {first.dtype} parameters")


def tile_layer_major(a: jax.Array) -> jax.Array:
    """A layer-major [L, ..., N] array as the kernel reads it, [N / T, L, ..., T] for T =
    :func:`lanes` (N padded to whole tiles by repeating the last network)."""
    n, width = a.shape[-1], lanes()
    a = jnp.concatenate([a, jnp.repeat(a[..., -1:], -n % width, -1)], -1) if n % width else a
    a = a.reshape(*a.shape[:-1], -1, width)
    return jnp.moveaxis(a, -2, 0)


def dag_states(op, kernel, stride, dilation, pad_before, pad_after, preds, output, input_size,
               *, features: R.Features, dtype: str) -> R.NodeState:
    """The output node's state ([A, N] fields) of N networks; call inside a jitted function.

    Arguments as :func:`rfsearch.kernel._program` takes them (layer-major) or, faster,
    tiled as ``dag.cc`` reads them (:func:`rfsearch.encode.tiled` with T = :func:`lanes`:
    op [N / T, L, 1, T], parameters [N / T, L, A, T], preds [N / T, L, M, T], or [L, M]
    shared by every network)."""
    n = output.shape[0]
    if kernel.ndim == 3:  # layer-major: tile here (a copy)
        shared = preds.ndim == 2
        op, kernel, stride, dilation, pad_before, pad_after = (
            tile_layer_major(a) for a in (op[:, None], kernel, stride, dilation, pad_before,
                                          pad_after))
        preds = preds if shared else tile_layer_major(preds)
    whole = kernel.shape[0] * kernel.shape[-1]
    output = jnp.concatenate([output, jnp.repeat(output[-1:], whole - n)]) if whole > n else output
    dt = jnp.dtype(dtype)
    axes = kernel.shape[2]
    field = jax.ShapeDtypeStruct((axes, whole), dt)
    results = (field,) * 5 + (jax.ShapeDtypeStruct((axes, whole), jnp.int8),
                              jax.ShapeDtypeStruct((axes, whole), jnp.int32))
    param = jnp.result_type(kernel, stride, dilation, pad_before, pad_after)
    params = (a.astype(param) for a in (kernel, stride, dilation, pad_before, pad_after))
    call = jax.ffi.ffi_call(TARGET, results)
    out = call(op.astype(jnp.int8), *params, preds.astype(jnp.int32), output.astype(jnp.int32),
               input_size.astype(jnp.int32),
               sized=features.sized, same=features.same, whole=features.whole)
    return R.NodeState(*(f[:, :n] for f in out))


@partial(jax.jit, static_argnames=("P", "sized", "M", "R_"))
def periodic_states(params: dict, preds, input_size, *, P: int, sized: bool, M: int = 0,
                    R_: int | None = None) -> dict:
    """:func:`rfsearch.periodic.propagate` (same arguments, same results: every node's
    state, [L, ...] fields, N last) computed by ``periodic.cc``; needs int64 (x64)."""
    L, A, n = params["k_eff"].shape

    def first(a):  # N first: the kernel walks one network at a time
        return jnp.moveaxis(a, -1, 0)

    codes = jnp.stack([params[k].astype(jnp.int8) for k in ("kind", "same", "ceil")], -1)
    wide = jnp.stack([params[k].astype(jnp.int64) for k in WIDE], -1)  # [L, A, N, 8]
    table = jax.ShapeDtypeStruct((n, L, A, P), jnp.int64)
    field = jax.ShapeDtypeStruct((n, L, A), jnp.int64)
    flag = jax.ShapeDtypeStruct((n, L, A), jnp.int32)
    results = (table, table, jax.ShapeDtypeStruct((n, L, A, P), jnp.int8), field, field, field,
               flag, flag)
    out = jax.ffi.ffi_call(PERIODIC_TARGET, results)(
        first(codes.transpose(0, 2, 1)), jnp.moveaxis(wide, 2, 0),
        *(first(params[k].astype(jnp.int64)) for k in ("a0", "b0")),
        first(preds.astype(jnp.int32)), input_size.astype(jnp.int64),
        P=np.int64(P), M=np.int64(M), R=np.int64(R_ or P), sized=sized)
    names = ("lo", "hi", "known", "T", "K", "size", "flags", "fault")
    states = {k: jnp.moveaxis(v, 0, -1) for k, v in zip(names, out, strict=True)}
    states["known"] = states["known"] != 0
    return states
