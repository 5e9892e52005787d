"""The compiled DAG kernel (rfsearch.native, dag.cc) against XLA's DAG programs.

Contract: for every row whose output flags lack OVERFLOW, every field of the output
state (u, v, J, rmin, size, flags, fault: values, dtypes and shapes) is the XLA
program's, bit for bit. Overflowing int32 rows may differ (the driver reruns them in
int64); in int64 both wrap the same way (dag.cc is built with -fwrapv), so every row,
overflowing or not, must be identical. Also: the fallbacks (switch, failing compiler),
the build cache, and the constants dag.cc hard-codes.
"""

from __future__ import annotations

import ast
import dataclasses
import operator
import os
import platform
import re
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from frames import frame_rows
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from reference import (
    GEOMETRY_COLUMNS,
    INPUT,
    MERGE_OPS,
    WHOLE_MAP_OPS,
    WINDOW_OPS,
    reference_evaluate,
)
from strategies import PADDING_MODES, batches, dags, input_sizes, int_or_pair, unary_layers

import rfsearch
from rfsearch import driver, native, ops
from rfsearch import kernel as K
from rfsearch import recurrence as R
from rfsearch.axes import MAX_PARAM
from rfsearch.cache import ENV_CACHE, cache_dir
from rfsearch.encode import fan_in_bucket
from rfsearch.spec import parse_input_size

pytestmark = pytest.mark.skipif(
    not native.available(),
    reason="compiled DAG kernel unavailable (RFSEARCH_NATIVE=0, no C++ compiler, "
           "a non-CPU backend, or the build failed)")

FIELDS = R.NodeState._fields
ROW_COUNTS = (1, 2, 15, 16, 17, 33)  # one network, tail tiles, whole tiles


def few(examples: int) -> settings:
    """Hypothesis settings for a handful of examples (each compiles programs)."""
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def assert_reference_rows(frame: pd.DataFrame, specs: list[dict], size) -> None:
    """Every row equals the plain-Python reference's (for invalid rows: an error and a
    null geometry; the wording is tested elsewhere)."""
    rows = frame_rows(frame)
    assert len(rows) == len(specs)
    for row, spec in zip(rows, specs, strict=True):
        expected = reference_evaluate(spec, size)
        if expected["error"] is not None:
            assert row["error"] is not None, spec["name"]
            assert all(row[c] is None for c in GEOMETRY_COLUMNS), spec["name"]
        else:
            assert row == expected, spec["name"]


# ---------------------------------------------------------------- running both programs

def xla_program(program):
    """The jitted XLA DAG program ``propagate`` runs for ``program`` (the native kernel off)."""
    return K._propagate_loop if program.loop_emitter else K._propagate


def run(jitted, args, program) -> R.NodeState:
    """The output node's state (host arrays) of one kernel call, as the driver makes it."""
    with jax.enable_x64(True):
        return R.NodeState(*(np.asarray(f) for f in
                             jax.device_get(jitted(*args, **program.options)).out))


def layer_major_args(batch, size, dtype, topology=None):
    """Layer-major arguments ([L, N] op, [L, A, N] parameters, preds [L, M, N] or [L, M]
    when shared) for the whole batch, unpadded, and XLA's program for them; ``topology``
    'dag' keeps per-network preds even when every network shares one topology."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(K, "uses_native", lambda *a, **k: False)
        program = driver.choose_program(batch, size, False, dtype, len(batch))
    args, program = driver.kernel_inputs(batch, slice(None), size, program, len(batch))
    if topology == "dag" and program.topology == "shared":
        args[6] = driver.kernel_arrays(batch, slice(None), program.axes)[-1]
        program = dataclasses.replace(program, topology="dag")
    assert args[1].ndim == 3 and program.kind == K.XLA_DAG and not program.tile
    return args, program


def driver_args(batch, size, dtype):
    """The arguments the driver sends when the native program runs (driver.kernel_inputs
    for the program it chooses: laid out as that program reads them fastest)."""
    program = driver.choose_program(batch, size, False, dtype, len(batch))
    assert program.kind == K.NATIVE and program.tile == native.lanes()
    return driver.kernel_inputs(batch, slice(None), size, program, len(batch))


def overflowed(state: R.NodeState) -> np.ndarray:
    """[N] rows whose output has OVERFLOW on some axis."""
    return ((state.flags & R.OVERFLOW) != 0).any(axis=0)


def assert_same_states(actual: R.NodeState, expected: R.NodeState, n: int, dtype: str,
                       exact_shape: bool) -> None:
    """Native ``actual`` equals XLA ``expected`` on the first ``n`` rows: dtypes, shapes
    (up to the native program's padding to whole tiles unless ``exact_shape``) and every
    value; in int32, rows that overflow in both may differ."""
    for f in FIELDS:
        a, e = getattr(actual, f), getattr(expected, f)
        assert a.dtype == e.dtype, f"{f}: {a.dtype} != {e.dtype}"
        if exact_shape:
            assert a.shape == e.shape, f"{f}: {a.shape} != {e.shape}"
        else:
            assert a.shape[0] == e.shape[0] and a.shape[1] >= n, f"{f}: {a.shape} vs {e.shape}"
    actual = R.NodeState(*(f[:, :n] for f in actual))
    expected = R.NodeState(*(f[:, :n] for f in expected))
    # a row without OVERFLOW in either program must be identical in the other, flags too
    np.testing.assert_array_equal(overflowed(actual), overflowed(expected),
                                  err_msg="OVERFLOW rows differ")
    keep = ~overflowed(expected) if np.dtype(dtype) == np.int32 else slice(None)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(actual, f)[:, keep], getattr(expected, f)[:, keep],
                                      err_msg=f"field {f} ({dtype})")


def check_programs(batch, size, dtype: str, layout: str, topology=None):
    """Run the XLA program and the native one on the same networks and compare them;
    returns (native, XLA) output states ([A, N] fields) and XLA's program. ``layout``:
    'driver' (driver.kernel_inputs' arguments for the native program, laid out as it
    reads them) or 'layer-major' (the XLA program's own arguments; ``topology`` 'dag'
    forces per-network input slots on a shared batch)."""
    args, program = layer_major_args(batch, size, dtype, topology)
    expected = run(xla_program(program), args, program)
    if layout == "driver":
        args, native_program = driver_args(batch, size, dtype)
        assert native_program.options == program.options
    assert K.uses_native(program.topology, False, batch.fan_in)
    actual = run(K._propagate_native, args, program)
    n = len(batch)
    assert_same_states(actual, expected, n, dtype, exact_shape=args[1].ndim == 3)
    return R.NodeState(*(f[:, :n] for f in actual)), expected, program


# ---------------------------------------------------------------- strategies

BIG = (1, 2, 3, 2**14, 2**14 + 1, 2**20, 2**30)  # around both widths' limits


@st.composite
def big_layers(draw, name: str) -> dict:
    """A windowed layer whose parameters may exceed the int32 (and int64) limits."""
    layer = {"name": name, "op": draw(st.sampled_from(sorted(WINDOW_OPS))),
             "kernel": draw(int_or_pair(st.sampled_from(BIG))),
             "stride": draw(int_or_pair(st.sampled_from(BIG)))}
    dilation = draw(int_or_pair(st.sampled_from((1, 2, 2**10))))
    k_eff = np.asarray(dilation) * (np.asarray(layer["kernel"]) - 1) + 1
    if (k_eff <= MAX_PARAM).all():
        layer["dilation"] = dilation
    layer["padding"] = draw(st.one_of(int_or_pair(st.sampled_from(BIG)),
                                      st.sampled_from(PADDING_MODES)))
    return layer


@st.composite
def wide_dags(draw, name: str = "net", fan_in: int = 2, big: bool = False) -> dict:
    """A random DAG whose widest node reads exactly ``fan_in`` inputs (with ``fan_in``
    1 there is no merge, but one layer reads an earlier node than the previous one, so
    it is not a chain). Other nodes: unary layers reading the previous or any earlier
    node, merges of 2..fan_in nodes (repeats allowed), whole-map layers; the output is
    any layer. ``big``: every unary layer is one of :func:`big_layers`."""
    count = draw(st.integers(max(fan_in, 2), fan_in + 4))
    widest = draw(st.integers(max(fan_in - 1, 1), count - 1))
    nodes, layers = [INPUT], []
    for index in range(count):
        lname = f"L{index}"
        kind = draw(st.integers(0, 7))
        if index == widest and fan_in > 1:
            layer = {"name": lname, "op": draw(st.sampled_from(sorted(MERGE_OPS)))}
            inputs = draw(st.lists(st.sampled_from(nodes), min_size=fan_in, max_size=fan_in,
                                   unique=True))
        elif fan_in > 1 and kind < 2:
            layer = {"name": lname, "op": draw(st.sampled_from(sorted(MERGE_OPS)))}
            width = draw(st.integers(2, fan_in))
            inputs = draw(st.lists(st.sampled_from(nodes), min_size=width, max_size=width))
        else:
            if kind == 2:
                layer = {"name": lname, "op": draw(st.sampled_from(sorted(WHOLE_MAP_OPS)))}
            else:
                layer = draw(big_layers(lname) if big else unary_layers(lname))
            if index == widest:  # fan_in 1: branch off an earlier node
                inputs = [draw(st.sampled_from(nodes[:-1]))]
            else:
                inputs = [draw(st.sampled_from(nodes)) if kind == 3 else nodes[-1]]
        layer["inputs"] = inputs
        layers.append(layer)
        nodes.append(lname)
    spec = {"name": name, "layers": layers}
    if draw(st.booleans()):
        spec["output"] = draw(st.sampled_from(nodes[1:]))
    return spec


def big_input_sizes():
    """Unknown, small, or at the limits of either width; square or not."""
    size = st.sampled_from((1, 7, 40, 2**14, 2**14 + 1, 2**30))
    return st.one_of(st.none(), size, st.tuples(size, size))


@st.composite
def rows_of(draw, batch):
    """Row indices into ``batch``: ROW_COUNTS rows, either all network 0 (a shared
    topology) or random networks."""
    n = draw(st.sampled_from(ROW_COUNTS), label="rows")
    if draw(st.booleans()):
        return np.zeros(n, int)
    return np.array(draw(st.lists(st.integers(0, len(batch) - 1), min_size=n, max_size=n)))


# ---------------------------------------------------------------- bit-identical states

@few(25)
@given(batches(kind=dags, min_size=1, max_size=4), st.data())
def test_native_matches_xla_on_random_dags(batch, data):
    """Random DAG batches (tests/strategies.py: unknown, square and non-square sizes,
    'same'/'same_lower', global_pool/dense heads, fan-ins 2-8) replicated to 1..33 rows
    (tail tiles) as per-network or shared topologies, in int32 and int64, with the
    driver's arguments for the native program or the XLA program's layer-major ones
    (also as per-network input slots for a shared batch): every non-overflow row is
    identical."""
    specs, input_size = batch
    encoded = rfsearch.encode(specs)
    assume(not encoded.is_chain)
    assert encoded.fan_in in native.SLOTS
    rows = data.draw(rows_of(encoded), label="row indices")
    dtype = data.draw(st.sampled_from(("int32", "int64")), label="dtype")
    layout = data.draw(st.sampled_from(("driver", "layer-major")), label="layout")
    topology = data.draw(st.sampled_from((None, "dag")), label="topology") if (
        layout == "layer-major") else None
    check_programs(encoded.take(rows), parse_input_size(input_size), dtype, layout,
                   topology)


@pytest.mark.parametrize("fan_in", [1, 2, 3, 4, 5, 8])
@few(6)
@given(data=st.data())
def test_native_matches_xla_for_each_fan_in(fan_in, data):
    """Every fan-in bucket the native kernel handles (1, 2, 3, 4 and 8 input slots:
    merges of 5 and of 8 inputs land in the 8-slot bucket; fan-in 1 is a DAG of
    branches without merges), whole-map layers mid-network, any output node, both
    layouts and widths, per-network and shared topologies, known and unknown sizes."""
    specs = data.draw(st.lists(wide_dags(fan_in=fan_in), min_size=1, max_size=3), label="specs")
    specs = [{**spec, "name": f"net{i}"} for i, spec in enumerate(specs)]
    encoded = rfsearch.encode(specs)
    assert not encoded.is_chain
    assert encoded.fan_in == fan_in_bucket(fan_in) and encoded.fan_in in native.SLOTS
    rows = data.draw(rows_of(encoded), label="row indices")
    size = parse_input_size(data.draw(input_sizes(), label="input size"))
    dtype = data.draw(st.sampled_from(("int32", "int64")), label="dtype")
    layout = data.draw(st.sampled_from(("driver", "layer-major")), label="layout")
    check_programs(encoded.take(rows), size, dtype, layout)


FEATURE_SPECS = [  # every branch of the recurrence, square and not
    {"name": "same", "layers": [
        {"name": "a", "op": "conv", "kernel": 3, "stride": 2, "padding": "same"},
        {"name": "b", "op": "maxpool", "kernel": 2, "stride": 2, "padding": "same_lower",
         "inputs": ["input"]},
        {"name": "s", "op": "add", "inputs": ["a", "b"]},
        {"name": "g", "op": "global_pool"}]},
    {"name": "rect", "layers": [
        {"name": "a", "op": "conv", "kernel": [3, 5], "stride": [1, 2], "dilation": [2, 1],
         "padding": [[1, 2], [0, 3]]},
        {"name": "b", "op": "avgpool", "kernel": [1, 3], "stride": [1, 2], "padding": "same",
         "inputs": ["input"]},
        {"name": "c", "op": "concat", "inputs": ["a", "b", "input"]},
        {"name": "d", "op": "dense"}]},
    {"name": "jumps", "layers": [  # different jumps at a merge: ERR_JUMP
        {"name": "a", "op": "conv", "kernel": 3, "stride": 2},
        {"name": "b", "op": "conv", "kernel": 3, "inputs": ["input"]},
        {"name": "s", "op": "add", "inputs": ["a", "b"]}]},
    {"name": "sizes", "layers": [  # same jump, different sizes: ERR_SIZE when sized
        {"name": "a", "op": "conv", "kernel": 3},
        {"name": "b", "op": "conv", "kernel": 1, "inputs": ["input"]},
        {"name": "s", "op": "add", "inputs": ["a", "b", "a"]}]},
    {"name": "empty", "layers": [  # an empty map on small inputs: ERR_EMPTY (3 - 8 < 0)
        {"name": "a", "op": "conv", "kernel": 8, "stride": 3},
        {"name": "g", "op": "global_pool", "inputs": ["input"]},
        {"name": "s", "op": "concat", "inputs": ["a", "g"]},
        {"name": "c", "op": "conv", "kernel": 2, "padding": "same_lower", "inputs": ["s"]}]},
    {"name": "deep", "layers": [  # a merge of the input with a deep branch, early output
        *({"name": f"c{i}", "op": "conv", "kernel": 3, "stride": 1 + i % 2, "padding": 1}
          for i in range(10)),
        {"name": "m", "op": "add", "inputs": ["c9", "c8", "c7", "input"]}],
     "output": "c5"},
]


@pytest.mark.parametrize("size", [None, 16, (16, 9), 3], ids=str)
@pytest.mark.parametrize("layout", ["driver", "layer-major"])
def test_native_matches_xla_on_every_feature(size, layout):
    """Hand-written DAGs exercising each branch: 'same'/'same_lower' at known and unknown
    sizes, global_pool/dense, non-square parameters and sizes (A = 2) and square ones
    (A = 1), jump, size and empty-map faults, repeated inputs, an early output node;
    per-network (17 rows: a tail tile) and shared (1 and 40 rows) topologies, in int32
    and int64."""
    full = rfsearch.encode(FEATURE_SPECS)
    square = rfsearch.encode([s for s in FEATURE_SPECS if s["name"] != "rect"])
    assert square.square and not full.square
    size = parse_input_size(size)
    cases = ((full.take(np.arange(17) % len(full)), "dag"),
             (square.take(np.arange(17) % len(square)), "dag"),
             (square.take(np.zeros(1, int)), "shared"),
             (full.take(np.full(40, 1)), "shared"))
    for batch, topology in cases:
        for dtype in ("int32", "int64"):
            _, expected, program = check_programs(batch, size, dtype, layout)
            assert program.topology == topology
            assert program.features == R.Features(size is not None, True, True)
            axes = 1 if batch.square and size in (None, (16, 16), (3, 3)) else 2
            assert expected.u.shape[0] == axes == driver.state_axes(batch, size)
            if size == (3, 3) and topology == "dag":  # faults occur and are compared
                assert (expected.fault != R.NO_FAULT).any()


# ---------------------------------------------------------------- overflow

def two_branches(name: str, depth: int, tail: list[dict]) -> dict:
    """Two branches of ``depth`` stride-2 layers (J = 2**depth) merged, then ``tail``."""
    a = [{"name": f"a{i}", "op": "conv", "kernel": 3, "stride": 2, "padding": 1}
         for i in range(depth)]
    b = [{"name": f"b{i}", "op": "avgpool", "kernel": 1, "stride": 2,
          "inputs": [f"b{i - 1}" if i else "input"]} for i in range(depth)]
    merge = {"name": "sum", "op": "add", "inputs": [f"a{depth - 1}", f"b{depth - 1}"]}
    return {"name": name, "layers": [*a, *b, merge, *tail]}


LIMIT32 = R.LIMITS[np.dtype(np.int32)]
OVERFLOW_SPECS = [
    two_branches("jump", 15, []),  # J = 2**15 > LIMIT32.param
    two_branches("region", 14, [  # J = 2**14, then three windows of 2**14: v - u > 2**29
        {"name": f"w{i}", "op": "conv", "kernel": LIMIT32.param} for i in range(3)]),
    two_branches("wraps", 14, [  # eight windows of 2**14: v - u wraps in int32
        {"name": f"w{i}", "op": "maxpool", "kernel": LIMIT32.param} for i in range(8)]),
    two_branches("fits", 13, []),  # J = 2**13: no overflow
]


@pytest.mark.parametrize("size", [None, LIMIT32.param], ids=str)
def test_int32_overflow_is_flagged_and_rerun_in_int64(size):
    """DAGs whose jump or region exceeds the int32 limits (the driver still picks int32
    for their parameters): the native int32 result has the OVERFLOW flag on exactly
    those rows, as XLA's does; evaluate (whose driver reruns them in int64, natively
    too) gives the same table with the native kernel on and off, and the reference's
    numbers."""
    encoded = rfsearch.encode(OVERFLOW_SPECS)
    size = parse_input_size(size)
    assert driver.compute_dtype(encoded, size) == "int32"
    actual, _, _ = check_programs(encoded, size, "int32", "driver")
    assert overflowed(actual).tolist() == [True, True, True, False]
    wide, _, _ = check_programs(encoded, size, "int64", "driver")
    assert not overflowed(wide).any()

    calls = []

    def counted(*args, **static):
        calls.append(static["dtype"])
        return native_program(*args, **static)

    native_program = K._propagate_native
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(K, "_propagate_native", counted)
        on = rfsearch.evaluate(OVERFLOW_SPECS, input_size=size)
    assert calls == ["int32", "int64"]  # the chunk, then its overflow rows
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(K, "uses_native", lambda *a, **k: False)
        off = rfsearch.evaluate(OVERFLOW_SPECS, input_size=size)
    pd.testing.assert_frame_equal(on, off)
    assert on["stride_h"][0] == 2**15 and on["error"].isna()[0]
    if size is None:
        assert on["error"].isna().all() and (on["rf_h"][1:3] > LIMIT32.position).all()
    assert_reference_rows(on, OVERFLOW_SPECS, size)


WRAP_SPEC = {"name": "wrap64", "layers": [  # J = 2**90 and positions wrap in int64
    {"name": "a", "op": "conv", "kernel": 2**30, "stride": 2**30, "padding": 2**30},
    {"name": "b", "op": "conv", "kernel": 3, "stride": 2**30, "padding": "same"},
    {"name": "c", "op": "conv", "kernel": 2**30, "stride": 2**30, "padding": 2**29},
    {"name": "d", "op": "maxpool", "kernel": 2**30, "stride": 2, "inputs": ["input"]},
    {"name": "s", "op": "add", "inputs": ["c", "d", "b"]},
    {"name": "e", "op": "conv", "kernel": 2**15, "dilation": 2**10, "padding": 2**30},
]}


@few(20)
@given(st.lists(st.one_of(*(wide_dags(fan_in=f, big=True) for f in (1, 2, 3, 5))),
                min_size=1, max_size=3),
       big_input_sizes(), st.sampled_from((1, 17)), st.sampled_from(("driver", "layer-major")))
@example([WRAP_SPEC], None, 1, "driver")
@example([WRAP_SPEC], 2**30, 17, "layer-major")
def test_int64_rows_are_identical_even_when_they_overflow(specs, input_size, n, layout):
    """Parameters and input sizes up to 2**30, far past the int64 limits of jump and
    region (J up to 2**90 wraps): in int64 every row is identical, OVERFLOW or not,
    because both programs wrap the same way. (Each bucket of fan-ins 1, 2, 3, 8.)"""
    wraps = any(spec is WRAP_SPEC for spec in specs)
    specs = [{**spec, "name": f"net{i}"} for i, spec in enumerate(specs)]
    encoded = rfsearch.encode(specs)
    assert not encoded.is_chain
    rows = np.arange(n) % len(encoded)
    actual, _, _ = check_programs(encoded.take(rows), parse_input_size(input_size),
                                  "int64", layout)
    if wraps:
        assert overflowed(actual).all()


# ---------------------------------------------------------------- through evaluate

@few(15)
@given(batches(kind=dags, min_size=1, max_size=6), st.data())
def test_evaluate_is_the_same_with_native_on_and_off(batch, data):
    """rfsearch.evaluate (per_layer=False) gives the same frame with the native kernel
    on and off (uses_native -> False: the XLA program), on random DAG batches of 1..33
    rows, and the native program really ran."""
    specs, input_size = batch
    encoded = rfsearch.encode(specs)
    assume(not encoded.is_chain)
    encoded = encoded.take(data.draw(rows_of(encoded), label="row indices"))
    calls, native_program = [], K._propagate_native

    def counted(*args, **static):
        calls.append(static["topology"])
        return native_program(*args, **static)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(K, "_propagate_native", counted)
        on = rfsearch.evaluate(encoded, input_size=input_size)
    assert calls, "the native program did not run"
    ran = len(calls)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(K, "uses_native", lambda *a, **k: False)
        mp.setattr(K, "_propagate_native", counted)
        off = rfsearch.evaluate(encoded, input_size=input_size)
    assert len(calls) == ran, "the native program ran with uses_native off"
    pd.testing.assert_frame_equal(on, off)


def test_dispatch():
    """The driver chooses the native program only for DAG topologies, without per-layer
    states, with a fan-in bucket in SLOTS (a merge of 9 inputs, 16 slots, runs XLA's)."""
    assert native.SLOTS == (1, 2, 3, 4, 8)
    for slots in native.SLOTS:
        assert K.uses_native("dag", False, slots) and K.uses_native("shared", False, slots)
        assert not K.uses_native("dag", True, slots)
        assert not K.uses_native("chain", False, slots)
    assert not K.uses_native("dag", False, 16)
    wide = {"name": "wide", "layers": [
        *({"name": f"c{i}", "op": "conv", "kernel": 1 + i % 3, "inputs": ["input"]}
          for i in range(9)),
        {"name": "m", "op": "concat", "inputs": [f"c{i}" for i in range(9)]}]}
    assert rfsearch.encode(wide).fan_in == 16
    dag = rfsearch.encode(FEATURE_SPECS[:2])
    assert driver.choose_program(dag, (8, 8)).kind == K.NATIVE
    assert driver.choose_program(dag, (8, 8), per_layer=True).kind == K.XLA_DAG
    assert driver.choose_program(rfsearch.encode(wide), (8, 8)).kind == K.XLA_DAG
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(K, "_propagate_native", lambda *a, **k: calls.append(k))
        frame = rfsearch.evaluate(wide, input_size=8)
    assert not calls
    assert_reference_rows(frame, [wide], 8)


# ---------------------------------------------------------------- fallbacks

@pytest.fixture
def reregister():
    """An environment to change (a MonkeyPatch) around a fresh registration: the cached
    answer of available() is cleared before and, after the environment is restored,
    cleared again and the kernel registered again (so later tests still have it)."""
    with pytest.MonkeyPatch.context() as mp:
        native._register.cache_clear()
        yield mp
        native._register.cache_clear()
    native._register.cache_clear()
    assert native.available(), "the kernel could not be registered again"


def tiny_dag_check():
    """The native program, freshly compiled, still matches XLA's on a small DAG batch."""
    encoded = rfsearch.encode(FEATURE_SPECS[:2]).take(np.arange(5) % 2)
    for layout in ("driver", "layer-major"):
        check_programs(encoded, (11, 6), "int32", layout)


def test_switch_turns_the_kernel_off(reregister):
    """RFSEARCH_NATIVE=0: available() is False, propagate() runs the XLA program, and
    evaluate still answers."""
    reregister.setenv(native.ENV_SWITCH, "0")
    assert native.available() is False
    assert not K.uses_native("dag", False, 2)
    assert driver.choose_program(rfsearch.encode(FEATURE_SPECS)).kind == K.XLA_DAG
    calls = []
    reregister.setattr(K, "_propagate_native", lambda *a, **k: calls.append(k))
    frame = rfsearch.evaluate(FEATURE_SPECS, input_size=16)
    assert not calls
    assert_reference_rows(frame, FEATURE_SPECS, 16)


def test_registering_again_keeps_the_kernel_working(reregister):
    """Registering the already registered FFI target again (a cleared cache) neither
    fails nor breaks the kernel: new programs compile and run with it."""
    assert native.available() is True
    native._register.cache_clear()
    assert native.available() is True
    jax.clear_caches()  # compile the native program again, against the new registration
    tiny_dag_check()


def test_a_second_library_keeps_the_first_registration(reregister, tmp_path):
    """A different library later in the process (another cache directory, compiler or
    source) is built but not registered again: XLA keeps one handler per target name and
    would refuse a second, so the first one stays in use."""
    first = native.build(native.compiler())
    other = tmp_path / "other" / first.name
    other.parent.mkdir()
    other.write_bytes(first.read_bytes())
    reregister.setattr(native, "build", lambda cxx: other)
    assert native.available() is True
    jax.clear_caches()
    tiny_dag_check()


def test_small_batches_do_not_wait_for_a_build(reregister, tmp_path):
    """With nothing built yet, a batch below BUILD_MIN_ROWS runs XLA's program instead of
    compiling dag.cc (seconds), and gives the same table; a cached build is simply
    loaded, and a batch of BUILD_MIN_ROWS networks builds."""
    built = native.build(native.compiler())
    reregister.setenv(ENV_CACHE, str(tmp_path))
    builds = []

    def build(cxx):
        builds.append(cxx)
        return built

    reregister.setattr(native, "build", build)
    assert not native._library_path(native.compiler()).exists()
    assert native.available(rows=native.BUILD_MIN_ROWS - 1) is False
    assert native.available(rows=0) is False
    assert not builds and not native._register.cache_info().currsize
    calls = []
    program = K._propagate_native
    reregister.setattr(K, "_propagate_native",
                       lambda *a, **k: calls.append(1) or program(*a, **k))
    frame = rfsearch.evaluate(FEATURE_SPECS, input_size=16)
    assert not calls and not builds  # XLA's program ran, nothing was compiled
    assert_reference_rows(frame, FEATURE_SPECS, 16)

    cached = native._library_path(native.compiler())
    cached.write_bytes(built.read_bytes())  # as if an earlier run had built it
    assert native.available(rows=1) is True
    assert builds  # build() only found the cached file (it would compile otherwise)
    native._register.cache_clear()
    cached.unlink()
    builds.clear()
    assert native.available(rows=native.BUILD_MIN_ROWS) is True
    assert builds


def test_failing_compiler_warns_once_and_falls_back(reregister, tmp_path):
    """A compiler that fails (CXX exits 1) with nothing cached: available() is False with
    exactly one RuntimeWarning naming the cause, no partial library is left in the
    cache, and evaluate runs XLA's program."""
    bad = tmp_path / "bad-c++"
    bad.write_text("#!/bin/sh\nexit 1\n")
    bad.chmod(0o755)
    cache = tmp_path / "cache"
    reregister.setenv("CXX", str(bad))
    reregister.setenv(ENV_CACHE, str(cache))
    assert native.compiler() == str(bad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert native.available() is False
        assert native.available() is False  # cached: no second build, no second warning
        assert not K.uses_native("shared", False, 2)
    assert [w.category for w in caught] == [RuntimeWarning], [str(w.message) for w in caught]
    assert str(caught[0].message).startswith("rfsearch: compiled kernels unavailable")
    assert list(cache.glob("*.so")) == []  # no partial library (only the build's lock file)
    assert_reference_rows(rfsearch.evaluate(FEATURE_SPECS[0], input_size=8),
                          FEATURE_SPECS[:1], 8)


def test_no_compiler_is_a_silent_fallback(reregister):
    """Without a C++ compiler, available() is False without a warning."""
    reregister.setattr(native, "compiler", lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.available() is False


# ---------------------------------------------------------------- the build cache

def test_build_reuses_the_cached_library(monkeypatch):
    """A second build() returns the same path without running the compiler, and marks
    the library used now (its mtime)."""
    cxx = native.compiler()
    path = native.build(cxx)
    assert path == native._library_path(cxx) and path.is_file()
    assert path.parent == cache_dir()
    inode = path.stat().st_ino
    os.utime(path, (1e9, 1e9))

    def no_compile(*args, **kwargs):
        raise AssertionError(f"compiled again: {args}")

    monkeypatch.setattr(native, "subprocess", types.SimpleNamespace(
        run=no_compile, CalledProcessError=subprocess.CalledProcessError))
    assert native.build(cxx) == path
    assert path.stat().st_ino == inode and time.time() - path.stat().st_mtime < 600


def test_a_new_build_prunes_libraries_unused_for_a_month(tmp_path):
    """Libraries for other sources, compilers or CPUs stay while some process uses them
    and go once unused for UNUSED_S; other files of the cache are never touched."""
    keep = tmp_path / "rfsearch_dag-new.so"
    files = {name: tmp_path / name for name in (
        "rfsearch_dag-old.so", "rfsearch_dag-old.lock", "rfsearch_dag-recent.so",
        "rfsearch_dag-recent.lock", "cells.npz")}
    for f in (keep, *files.values()):
        f.write_bytes(b"x")
    month = time.time() - native.UNUSED_S - 60
    for f in (keep, files["rfsearch_dag-old.so"], files["cells.npz"]):
        os.utime(f, (month, month))
    native.prune(keep)
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted([
        keep.name, "rfsearch_dag-recent.so", "rfsearch_dag-recent.lock", "cells.npz"])


def test_cache_path_names_everything_the_binary_depends_on(monkeypatch, tmp_path):
    """The cached library's name changes with any source's bytes, the compiler and the
    flags; $RFSEARCH_CACHE moves the cache."""
    cxx = native.compiler()
    original = native._library_path(cxx)
    changed = tmp_path / "dag.cc"
    changed.write_bytes(native.SOURCE.read_bytes() + b"\n// one more line\n")
    with monkeypatch.context() as mp:
        mp.setattr(native, "SOURCE", changed)
        assert native._library_path(cxx) != original
        assert native._library_path(cxx).parent == original.parent
    periodic = tmp_path / "periodic.cc"
    periodic.write_bytes(native.PERIODIC_SOURCE.read_bytes() + b"\n// one more line\n")
    with monkeypatch.context() as mp:
        mp.setattr(native, "PERIODIC_SOURCE", periodic)
        assert native._library_path(cxx) != original
    chain = tmp_path / "chain.cc"
    chain.write_bytes(native.CHAIN_SOURCE.read_bytes() + b"\n// one more line\n")
    with monkeypatch.context() as mp:
        mp.setattr(native, "CHAIN_SOURCE", chain)
        assert native._library_path(cxx) != original
    with monkeypatch.context() as mp:
        mp.setattr(native, "FLAGS", (*native.FLAGS, "-g"))
        assert native._library_path(cxx) != original
    assert native._library_path(cxx + "-other") != original
    assert native._library_path(cxx) == original
    monkeypatch.setenv(ENV_CACHE, str(tmp_path))
    assert native._library_path(cxx) == tmp_path / original.name


# ---------------------------------------------------------------- constants

_BINARY = {ast.LShift: operator.lshift, ast.Add: operator.add, ast.Sub: operator.sub,
           ast.Mult: operator.mul}


def cpp_value(expr: str, names: dict[str, int] | None = None) -> int:
    """The value of a constant C++ integer expression of dag.cc (literals, <<, +, -, *,
    parentheses, int64_t{1}, std::numeric_limits<int32_t>::max(), and the constants in
    ``names``)."""
    names = names or {}
    expr = expr.replace("std::numeric_limits<int32_t>::max()", str(2**31 - 1))
    expr = re.sub(r"int(?:32|64)_t\{(\d+)\}", r"\1", expr)

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"not a constant expression: {expr!r}")

    return value(ast.parse(expr.strip(), mode="eval").body)


def dag_cc_constants() -> dict[str, int]:
    """Every ``constexpr`` integer at dag.cc's namespace scope (a line starting with
    ``constexpr``), and Limits<T>'s members as ``Limits<int32_t>.param`` etc."""
    source = native.SOURCE.read_text()
    found: dict[str, int] = {}
    for body in re.findall(r"^constexpr\s+\w+\s+([^;]+);", source, re.MULTILINE):
        for name, expr in re.findall(r"(\w+)\s*=\s*([^,]+)", body):
            found[name] = cpp_value(expr, found)
    limits = re.findall(r"struct Limits<(\w+)>\s*\{\s*static constexpr \w+ ([^;]+);", source)
    assert len(limits) == 2, "Limits specialisations not found in dag.cc"
    for width, body in limits:
        for name, expr in re.findall(r"(\w+)\s*=\s*([^,]+)", body):
            found[f"Limits<{width}>.{name}"] = cpp_value(expr)
    return found


def test_dag_cc_constants_match_python():
    """Each constant dag.cc hard-codes from the Python side (flags, fault codes, op codes,
    the packed word's layout, the width limits, the fan-in buckets it dispatches)
    equals the Python value it mirrors, and native._EXPECTED states the same values.
    (dag.cc's own constants, such as its tile width, are not compared.)"""
    python = {
        "KNOWN": R.KNOWN, "ALIGNED": R.ALIGNED, "UNBOUNDED": R.UNBOUNDED,
        "OVERFLOW": R.OVERFLOW, "MISALIGNED": R.MISALIGNED, "ERR_NONE": R.ERR_NONE,
        "ERR_JUMP": R.ERR_JUMP, "ERR_SIZE": R.ERR_SIZE, "ERR_EMPTY": R.ERR_EMPTY,
        "FAULT_CODES": R.FAULT_CODES, "NO_FAULT": R.NO_FAULT, "GLOBAL_POOL": ops.GLOBAL_POOL,
        "DENSE": ops.DENSE, "PAD_SAME_LOWER": ops.PAD_SAME_LOWER, "FLAG_BITS": K.FLAG_BITS,
        "PACKED_NO_FAULT": K.PACKED_NO_FAULT,
        "Limits<int32_t>.param": R.LIMITS[np.dtype(np.int32)].param,
        "Limits<int32_t>.position": R.LIMITS[np.dtype(np.int32)].position,
        "Limits<int64_t>.param": R.LIMITS[np.dtype(np.int64)].param,
        "Limits<int64_t>.position": R.LIMITS[np.dtype(np.int64)].position,
    }
    found = dag_cc_constants()
    missing = sorted(set(python) - set(found))
    assert not missing, f"not found in dag.cc: {missing}"
    assert {k: found[k] for k in python} == python
    assert native._CONSTANTS == native._EXPECTED
    mirrored = [found[k] for k in ("KNOWN", "ALIGNED", "UNBOUNDED", "OVERFLOW", "MISALIGNED",
                                   "ERR_NONE", "ERR_JUMP", "ERR_SIZE", "ERR_EMPTY",
                                   "FAULT_CODES", "NO_FAULT", "GLOBAL_POOL", "DENSE",
                                   "PAD_SAME_LOWER")]
    limits = [(found[f"Limits<{w}>.param"], found[f"Limits<{w}>.position"])
              for w in ("int32_t", "int64_t")]
    assert (*mirrored, *limits) == native._EXPECTED[:16]  # the rest: periodic.cc's
    # R.NO_FAULT's packed form: a fault in the packed word's bits, flags below them
    assert K.PACKED_NO_FAULT == (1 << (32 - 1 - K.FLAG_BITS)) - 1
    assert (1 << K.FLAG_BITS) > R.KNOWN | R.ALIGNED | R.UNBOUNDED | R.OVERFLOW | R.MISALIGNED
    cases = {int(m) for m in re.findall(r"case (\d+): return go\(", native.SOURCE.read_text())}
    assert cases == set(native.SLOTS)


def test_cpp_value_parses_dag_cc_spellings():
    """The little C++ evaluator the constants test relies on."""
    assert cpp_value("(1 << 26) - 1") == 2**26 - 1
    assert cpp_value("int64_t{1} << 61") == 2**61
    assert cpp_value("std::numeric_limits<int32_t>::max()") == 2**31 - 1
    assert cpp_value("-2") == -2
    assert cpp_value("4 * LANES", {"LANES": 16}) == 64
    with pytest.raises(ValueError):
        cpp_value("sizeof(int)")


# ---------------------------------------------------------------- hardening and portability

def test_inconsistent_arguments_are_refused_not_read():
    """The handler checks every argument's shape and type against the parameters': a
    mismatch is an error from XLA, never an out-of-bounds read."""
    batch = rfsearch.encode(FEATURE_SPECS[:2]).take(np.arange(40) % 2)
    args, program = driver_args(batch, None, "int32")
    assert args[1].ndim == 4 and args[1].shape[-1] == native.lanes()
    one_tile = [args[0][:1], *args[1:]]  # op for one tile, parameters for several
    with jax.enable_x64(True), pytest.raises(jax.errors.JaxRuntimeError, match="mismatch"):
        jax.block_until_ready(K._propagate_native(*one_tile, **program.options))


def test_zero_stride_in_int64_does_not_trap():
    """A hand-built Batch can hold stride 0 (the encoder refuses it): the int64 division
    must not trap (SIGFPE would kill the process), whatever the row then says."""
    batch = rfsearch.encode(FEATURE_SPECS[:1]).take(np.zeros(16, int))
    args, program = driver_args(batch, (16, 16), "int64")
    stride = np.array(args[2])
    stride[:, 1] = 0  # every network's first layer
    args[2] = stride
    with jax.enable_x64(True):
        out = jax.block_until_ready(K.propagate(program, *args))
    assert out.out.u.shape[-1] >= 16


def test_small_batch_with_an_unusable_cache_path_falls_back(reregister):
    """Deciding whether a cached build exists must not raise (here a path component too
    long for the file system): the batch runs XLA's program."""
    reregister.setenv(ENV_CACHE, "/tmp/" + "x" * 300 + "/cache")
    assert native.available(rows=1) is False
    frame = rfsearch.evaluate(FEATURE_SPECS, input_size=16)
    assert_reference_rows(frame, FEATURE_SPECS, 16)


PORTABLE_BUILD = """
import sys, numpy as np, jax
sys.path[:0] = [{tests!r}]
from rfsearch import native
native.FLAGS = tuple(f for f in native.FLAGS if not f.startswith("-march")) + ("-march={march}",)
assert native.available(), "no build"
print("lanes", native.lanes())
import rfsearch
from test_native import FEATURE_SPECS, check_programs
batch = rfsearch.encode(FEATURE_SPECS).take(np.arange(37) % len(FEATURE_SPECS))
for size in (None, (16, 16), (16, 9)):
    check_programs(batch, size, "int32", "driver")
check_programs(batch, (16, 9), "int64", "driver")
print("agree")
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 ISA levels")
@pytest.mark.parametrize(("march", "lanes"), [("x86-64-v3", 8), ("x86-64", 4)])
def test_builds_without_avx512_agree_with_xla(march, lanes, tmp_path):
    """Builds for CPUs without AVX-512 (AVX2: 8 lanes and its gathers; baseline x86-64:
    4 lanes, gathers lane by lane) compute the same rows as XLA's program. In a fresh
    process: XLA keeps the first kernel registered for the process's lifetime."""
    code = PORTABLE_BUILD.format(tests=str(Path(__file__).parent), march=march)
    env = {**os.environ, ENV_CACHE: str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"lanes {lanes}" in done.stdout and "agree" in done.stdout
