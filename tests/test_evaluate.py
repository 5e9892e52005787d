"""``evaluate``: agrees exactly with the plain-Python reference on random networks.

Whole batches (0, 1 and many specs) go through one ``evaluate`` call and are compared
row by row with ``reference.reference_evaluate``: every geometry column must be equal
(None = null) on valid rows; on rows the reference finds invalid, rfsearch must give an
error and a null geometry. Also: the empty batch, nullable columns, every DAG program
agrees, and bad arguments raise one SpecError. Error messages of bad specs are checked
in test_spec.py, test_sources.py and test_faults.py.
"""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest
from frames import frame_rows
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from reference import (
    COLUMNS,
    GEOMETRY_COLUMNS,
    LAYER_COLUMNS,
    reference_evaluate,
    reference_evaluate_layers,
)
from strategies import batches, chains, dags, input_sizes

import rfsearch

ONE_CONV = {"name": "ok", "layers": [{"op": "conv", "kernel": 3}]}
AGREEMENT = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_rows_agree(actual: dict, expected: dict) -> None:
    """One rfsearch row against one reference row (plain values, None = null)."""
    where = f"{expected['name']} {expected.get('layer_name', '')}"
    assert actual["name"] == expected["name"]
    if expected["error"] is not None:
        assert actual["error"] is not None, f"{where}: reference says {expected['error']!r}"
        assert {c: actual[c] for c in GEOMETRY_COLUMNS} == dict.fromkeys(GEOMETRY_COLUMNS)
        return
    assert actual["error"] is None, f"{where}: unexpected error {actual['error']!r}"
    assert {c: actual[c] for c in GEOMETRY_COLUMNS} == {
        c: expected[c] for c in GEOMETRY_COLUMNS
    }, where


def check_batch(specs: list[dict], input_size) -> None:
    """One evaluate call on the batch; every network row equals the reference's."""
    frame = rfsearch.evaluate(specs, input_size=input_size)
    assert list(frame.columns) == list(COLUMNS)
    actual = frame_rows(frame)
    assert len(actual) == len(specs)
    for row, spec in zip(actual, specs, strict=True):
        assert_rows_agree(row, reference_evaluate(spec, input_size))


@AGREEMENT
@given(batches(kind=chains))
def test_chains_agree(batch):
    """Random chains, batches of 0..6 networks."""
    check_batch(*batch)


@AGREEMENT
@given(batches(kind=dags))
def test_dags_agree(batch):
    """Random DAGs (add / concat of 2-3 earlier nodes), batches of 0..6 networks."""
    check_batch(*batch)


@AGREEMENT
@given(batches(kind=dags, min_size=8, max_size=20))
def test_many_networks_agree(batch):
    """Larger batches: every row still matches its own network (no cross-talk)."""
    check_batch(*batch)


@AGREEMENT
@given(batches(kind=dags, max_size=4))
def test_per_layer_agrees(batch):
    """per_layer=True: one row per (network, layer), spec order, each equal to the reference."""
    specs, input_size = batch
    frame = rfsearch.evaluate(specs, input_size=input_size, per_layer=True)
    assert set(COLUMNS) | set(LAYER_COLUMNS) == set(frame.columns)
    expected = [row for spec in specs for row in reference_evaluate_layers(spec, input_size)]
    actual = frame_rows(frame)
    assert [(r["name"], r["layer"], r["layer_name"], r["op"]) for r in actual] == [
        (r["name"], r["layer"], r["layer_name"], r["op"]) for r in expected
    ]
    for row, reference_row in zip(actual, expected, strict=True):
        assert_rows_agree(row, reference_row)


@settings(max_examples=30, deadline=None)
@given(chains(whole_map=False), input_sizes(), st.data())
def test_output_field_picks_the_layer(spec, input_size, data):
    """'output' naming an earlier layer gives that layer's geometry as the network row."""
    layer_rows = reference_evaluate_layers(spec, input_size)
    assume(all(r["error"] is None for r in layer_rows))
    chosen = data.draw(st.sampled_from(layer_rows))
    (row,) = frame_rows(rfsearch.evaluate(
        {**spec, "output": chosen["layer_name"]}, input_size=input_size))
    assert_rows_agree(row, {k: chosen[k] for k in COLUMNS})


@settings(max_examples=20, deadline=None)
@given(dags(), input_sizes())
def test_single_spec_equals_batch_of_one(spec, input_size):
    """A bare spec dict gives the same one-row table as a list holding it."""
    pd.testing.assert_frame_equal(
        rfsearch.evaluate(spec, input_size=input_size),
        rfsearch.evaluate([spec], input_size=input_size),
    )


@settings(max_examples=20, deadline=None)
@given(batches(kind=dags, min_size=1))
def test_encoded_batch_equals_specs(batch):
    """evaluate(encode(specs)) is evaluate(specs): parse once, run many times."""
    specs, input_size = batch
    pd.testing.assert_frame_equal(
        rfsearch.evaluate(rfsearch.encode(specs), input_size=input_size),
        rfsearch.evaluate(specs, input_size=input_size),
    )


def test_unknown_padding_on_one_axis_keeps_the_other_axis_misalignment():
    """aligned is null only for the axis with unknown padding: a known False wins (Kleene AND).

    Height: centres 0 ('same' 3x3) and 1 (valid 2x1) meet at the add: misaligned for
    certain. Width: 'same' with stride 2 and no input size: padding unknown.
    """
    spec = {"name": "one_axis", "layers": [
        {"name": "a", "op": "conv", "kernel": 3, "stride": [1, 2], "padding": "same"},
        {"name": "b", "op": "conv", "kernel": [2, 1], "stride": [1, 2], "inputs": ["input"]},
        {"name": "sum", "op": "add", "inputs": ["a", "b"]},
    ]}
    (row,) = frame_rows(rfsearch.evaluate(spec))
    assert (row["padding_h"], row["padding_w"]) == (1, None)
    assert row["aligned"] is False
    assert_rows_agree(row, reference_evaluate(spec))


def test_empty_batch():
    """Zero networks: an empty table that still has every column, per network and per layer."""
    assert list(rfsearch.evaluate([]).columns) == list(COLUMNS)
    assert len(rfsearch.evaluate([], input_size=32)) == 0
    per_layer = rfsearch.evaluate([], per_layer=True)
    assert len(per_layer) == 0
    assert set(COLUMNS) | set(LAYER_COLUMNS) == set(per_layer.columns)


def test_empty_dag_batch():
    """A DAG Batch with no rows left (``take([])``) gives the same empty tables as an
    empty list of specs, with either DAG program."""
    from rfsearch import kernel as K

    spec = {"name": "d", "layers": [
        {"name": "a", "op": "conv", "kernel": 3}, {"name": "b", "op": "conv", "kernel": 3},
        {"name": "s", "op": "add", "inputs": ["a", "b"]}]}
    empty = rfsearch.encode([spec]).take(np.array([], int))
    for native in (True, False):
        with pytest.MonkeyPatch.context() as mp:
            if not native:
                mp.setattr(K, "uses_native", lambda *a, **k: False)
            for kwargs in ({}, {"input_size": 32}, {"per_layer": True}):
                pd.testing.assert_frame_equal(rfsearch.evaluate(empty, **kwargs),
                                              rfsearch.evaluate([], **kwargs))


def test_geometry_columns_are_nullable():
    """Numeric and boolean columns use pandas' nullable extension dtypes (pd.NA for null)."""
    frame = rfsearch.evaluate([{"name": "n", "layers": [{"name": "gp", "op": "global_pool"}]}])
    for column in GEOMETRY_COLUMNS:
        assert pd.api.types.is_extension_array_dtype(frame[column].dtype), column
    assert frame.loc[0, "rf_h"] is pd.NA and frame.loc[0, "out_h"] is pd.NA


@settings(max_examples=8, deadline=None)
@given(batches(kind=dags, min_size=1, max_size=3))
def test_unjitted_kernel_agrees(batch):
    """The kernel run op by op (jax.disable_jit) gives the jitted result, per network and layer."""
    specs, input_size = batch
    for per_layer in (False, True):
        jitted = rfsearch.evaluate(specs, input_size=input_size, per_layer=per_layer)
        with jax.disable_jit():
            eager = rfsearch.evaluate(specs, input_size=input_size, per_layer=per_layer)
        pd.testing.assert_frame_equal(eager, jitted)


@settings(max_examples=10, deadline=None)
@given(batches(kind=dags, min_size=2, max_size=4))
def test_dag_programs_agree(batch):
    """Every DAG program gives the same rows: the compiled CPU kernel (rfsearch.native,
    where available; per_layer=False only), XLA's program compiled by the CPU loop
    emitter (where this XLA has it) and by the default emitter (GPUs, or an XLA without
    the option), for per-network topologies and for a topology the whole chunk shares,
    with and without per-layer rows. Each program is checked to have run."""
    from rfsearch import kernel as K
    from rfsearch import native
    from rfsearch.driver import topology_of

    specs, input_size = batch
    mixed = rfsearch.encode(specs)
    assume(topology_of(mixed, mixed.layer_major("preds")) == "dag")
    shared = mixed.take(np.zeros(5, int))  # network 0, five times: one shared topology
    calls = []

    def counted(name, program):
        def run(*args, **static):
            calls.append((name, static["topology"], static["per_layer"]))
            return program(*args, **static)
        return run

    programs = {name: getattr(K, attr) for name, attr in (
        ("native", "_propagate_native"), ("loop", "_propagate_loop"), ("default", "_propagate"))}
    for batch, topology in ((mixed, "dag"), (shared, "shared")):
        for per_layer in (False, True):
            expected = {"default"}
            if K.loop_emitter_available():
                expected.add("loop")
            if not per_layer and native.available() and batch.fan_in in native.SLOTS:
                expected.add("native")
            frames = {}
            for name in sorted(expected):
                calls.clear()
                with pytest.MonkeyPatch.context() as mp:
                    for other, program in programs.items():
                        mp.setattr(K, f"_propagate{'' if other == 'default' else '_' + other}",
                                   counted(other, program))
                    if name != "native":  # force XLA's program
                        mp.setattr(K, "uses_native", lambda *a, **k: False)
                    if name == "default":
                        mp.setattr(K, "loop_emitter_available", lambda: False)
                    frames[name] = rfsearch.evaluate(batch, input_size=input_size,
                                                     per_layer=per_layer)
                ran = {c[0] for c in calls if c[1:] == (topology, per_layer)}
                assert ran == {name}, f"{name} ({topology}, per_layer={per_layer}) ran {ran}"
            first, *others = sorted(frames)
            for name in others:
                pd.testing.assert_frame_equal(frames[name], frames[first], obj=f"{name} vs {first}")


def test_bad_arguments_raise_one_spec_error():
    with pytest.raises(rfsearch.SpecError, match=r"^input size must be a positive integer"):
        rfsearch.evaluate(ONE_CONV, input_size=0)
    with pytest.raises(rfsearch.SpecError, match=r"each at most 1073741824, got 2000000000"):
        rfsearch.evaluate(ONE_CONV, input_size=2_000_000_000)
    with pytest.raises(rfsearch.SpecError, match=r"^input size must be N, HxW or DxHxW, got '3x'$"):
        rfsearch.evaluate(ONE_CONV, input_size="3x")
    with pytest.raises(rfsearch.SpecError, match=r"^chunk_size must be a positive integer"):
        rfsearch.evaluate(ONE_CONV, chunk_size=0)
    with pytest.raises(rfsearch.SpecError, match="kernel must be a positive integer"):
        rfsearch.encode({"layers": [{"op": "conv", "kernel": 0}]})
    with pytest.raises(rfsearch.SpecError, match=r"stride must be a positive integer at most"):
        rfsearch.chains([[3, 3]], stride=[[1, 0]])
