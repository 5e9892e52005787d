"""The compiled periodic kernel (rfsearch/native/periodic.cc) against XLA's periodic
program (rfsearch.periodic.propagate).

Contract: on the same encoded batch, every field of every node's state (lo, hi, known,
T, K, size, flags, fault: values, dtypes and shapes) is identical, by period and unit by
unit, with and without an input size. Both run in int64 and wrap alike (-fwrapv).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from oracle_strategies import networks
from test_native import cpp_value

from rfsearch import native, periodic, periodic_eval, zoo
from rfsearch import recurrence as R
from rfsearch.axes import parse_input_sizes, size_for
from rfsearch.errors import SpecError
from rfsearch.reads import RESAMPLE, WHOLE, WINDOW
from rfsearch.spec import parse_network

pytestmark = pytest.mark.skipif(
    not native.available(),
    reason="compiled kernels unavailable (RFSEARCH_NATIVE=0, no C++ compiler, "
           "a non-CPU backend, or the build failed)")

HEADS = ({"op": "global_pool"}, {"op": "dense"}, {"op": "relu"})


def states_by(program, networks, size, units: bool) -> dict:
    """Every node's state of ``networks`` run by ``program`` (as periodic_eval runs it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(periodic_eval, "program", lambda rows: program)
        _, states, _ = periodic_eval.run(networks, size, units)
    return states


def assert_same_states(networks, size, units: bool) -> None:
    xla = states_by(periodic.propagate, networks, size, units)
    compiled = states_by(native.periodic_states, networks, size, units)
    assert xla.keys() == compiled.keys()
    for key in xla:
        assert xla[key].dtype == compiled[key].dtype, key
        assert xla[key].shape == compiled[key].shape, key
        np.testing.assert_array_equal(compiled[key], xla[key], err_msg=key)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(dims=st.sampled_from((1, 2, 3)), data=st.data())
def test_compiled_periodic_kernel_matches_xla(dims, data):
    """Batches of random networks using every op of issue #14 (tests/oracle_strategies.py),
    some ending in a whole-map head, with merges of different jumps and sizes among them:
    identical states unsized, by period at the first network's size, and unit by unit."""
    drawn = [data.draw(networks(dims), label=f"network {i}") for i in range(4)]
    specs = [spec for spec, _ in drawn]
    for spec in specs[:2]:
        head = data.draw(st.sampled_from(HEADS), label="head")
        spec["layers"].append({"name": "head", **head, "inputs": [spec["layers"][-1]["name"]]})
    try:
        nets = [parse_network(spec) for spec in specs]
    except SpecError:  # e.g. a transposed convolution leaving units that read nothing
        assume(False)
    size = size_for(parse_input_sizes(drawn[0][1]), dims)
    assert_same_states(nets, None, False)
    assert_same_states(nets, size, False)
    assert_same_states(nets, size, True)


DECODERS = {  # zoo networks with every new op, by dims, and an input size
    1: (("wavenet", "tcn"), "4000"),
    2: (("unet", "unet_same", "fpn_resnet50", "deeplabv3_resnet50", "espcn", "googlenet"),
        "572"),
    3: (("r3d_18",), "16x112x112"),
}


@pytest.mark.parametrize("dims", sorted(DECODERS))
def test_compiled_periodic_kernel_matches_xla_on_the_zoo(dims):
    names, size = DECODERS[dims]
    nets = [parse_network(zoo.build(name)) for name in names]
    if dims == 2:  # align_corners: unit by unit only
        nets.append(parse_network(zoo.build("unet_same", upsample="bilinear")))
    shape = size_for(parse_input_sizes(size), dims)
    assert_same_states(nets[:-1] if dims == 2 else nets, None, False)
    assert_same_states(nets, shape, True)


def test_an_align_corners_upsample_of_a_one_unit_map():
    """N = 0 (every unit reads unit 0): the kernel computes what XLA does, without a trap
    on the 'same' rest XLA computes with a zero stride and ignores."""
    spec = {"name": "one", "dims": 1, "layers": [
        {"name": "c", "op": "conv", "kernel": 2},
        {"name": "up", "op": "upsample", "factor": 3, "mode": "linear", "align_corners": True},
        {"name": "d", "op": "conv", "kernel": 3, "padding": "same"}]}
    assert_same_states([parse_network(spec)], (2,), True)


def test_a_malformed_call_is_refused_not_read():
    """Arguments the kernel does not expect raise an error instead of reading past them."""
    net = parse_network(zoo.build("espcn"))
    batch = periodic.encode_periodic([net])
    params = {"kind": batch.kind, "same": batch.same, "ceil": batch.ceil, **batch.fields,
              "a0": batch.a0, "b0": batch.b0}
    import jax
    with jax.enable_x64(True), pytest.raises(Exception, match="rfsearch_periodic"):
        native.periodic_states(params, batch.preds, np.zeros(5, np.int64), P=4, sized=False)


def test_periodic_cc_constants_match_python():
    """The constants periodic.cc hard-codes equal the Python values they mirror, and its
    order of the wide fields is rfsearch.periodic.WIDE."""
    source = native.PERIODIC_SOURCE.read_text()
    found = {}
    for body in re.findall(r"^constexpr\s+\w+\s+([^;]+);", source, re.MULTILINE):
        for name, expr in re.findall(r"(\w+)\s*=\s*([^,]+)", body):
            if "numeric_limits<int64_t>" not in expr:
                found[name] = cpp_value(expr, found)
    limits = R.LIMITS[np.dtype(np.int64)]
    python = {"KNOWN": R.KNOWN, "ALIGNED": R.ALIGNED, "UNBOUNDED": R.UNBOUNDED,
              "OVERFLOW": R.OVERFLOW, "MISALIGNED": R.MISALIGNED, "MIXED": R.MIXED,
              "ERR_NONE": R.ERR_NONE, "ERR_JUMP": R.ERR_JUMP, "ERR_SIZE": R.ERR_SIZE,
              "ERR_EMPTY": R.ERR_EMPTY, "FAULT_CODES": R.FAULT_CODES,
              "NO_FAULT": R.NO_FAULT, "WINDOW": WINDOW, "RESAMPLE": RESAMPLE, "WHOLE": WHOLE,
              "PAD_SAME_LOWER": -2, "PARAM": limits.param, "POSITION": limits.position}
    assert {k: found.get(k) for k in python} == python
    order = re.search(r"enum Wide \{([^}]*)\}", source).group(1)
    fields = [f.strip() for f in order.split(",")][:-1]
    assert [f.lower() for f in fields] == [f.lower() for f in periodic.WIDE]
    kinds = tuple(found[k] for k in ("WINDOW", "RESAMPLE", "WHOLE"))
    assert native._EXPECTED[16:] == (found["MIXED"], kinds, periodic.WIDE)
    assert native._CONSTANTS == native._EXPECTED
