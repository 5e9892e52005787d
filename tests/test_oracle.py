"""Self-tests of the oracle (tests/oracle.py): it must agree with rfsearch on today's ops,
with direct definitions of each op's reads, with other jax operators, and with known facts
about published networks, before it can judge rfsearch on the ops of issue #14."""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from frames import frame_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax import lax
from oracle import Invalid, Period, jump, padding, period, rf, rf_min, simulate
from oracle_nets import tcn, unet, wavenet
from oracle_reads import source_taps, transpose_reads, upsample_reads, window_reads
from oracle_spec import axis_value, pair
from oracle_strategies import NEW_OPS, networks
from reference import normalized_layers, output_name, topological_order
from strategies import dags, input_sizes

import rfsearch

FEW = settings(max_examples=15, deadline=None, derandomize=True,  # the same cases in CI
               suppress_health_check=[HealthCheck.too_slow])


def one(op: str, dims: int = 1, **params) -> dict:
    """A one-layer spec."""
    return {"name": op, "dims": dims, "layers": [{"name": "x", "op": op, **params}]}


def boxes(sim, axis: int = 0) -> list[tuple[int, int]]:
    """The real units' boxes along one axis."""
    a = sim.axes[axis]
    return [(int(lo), int(hi)) for lo, hi in zip(a.lo, a.hi, strict=True)]


# ------------------------------------------------------ (a) today's ops agree with rfsearch


def oracle_row(sim) -> dict:
    """rfsearch's geometry columns, read off a simulation of today's ops."""
    row = {"aligned": sim.aligned}
    for axis, suffix in zip(sim.axes, "hw", strict=True):
        found = jump(axis, virtual=True)
        assert found.period == 1  # today's ops: every unit has the same box shape
        row |= {f"rf_{suffix}": rf(axis), f"stride_{suffix}": found.shift,
                f"padding_{suffix}": padding(axis), f"out_{suffix}": axis.size}
        if axis.path_min is not None:
            row[f"rf_min_{suffix}"] = rf_min(axis)
    return row


@settings(FEW, max_examples=10)
@given(dags(max_layers=5), input_sizes(allow_none=False))
def test_agrees_with_rfsearch_on_todays_ops(spec, input_size):
    """Random chains and DAGs of today's ops: the oracle's rf, rf_min, stride, padding,
    out and aligned are rfsearch's; rfsearch's errors are the oracle's invalid networks
    (empty map, merge of different sizes) or merges of different jumps."""
    (row,) = frame_rows(rfsearch.evaluate([spec], input_size=input_size))
    try:
        sim = simulate(spec, input_size)
    except Invalid:
        assert row["error"] is not None
        return
    if not sim.rates_equal:
        assert row["error"] is not None
        return
    assert row["error"] is None, row["error"]
    expected = oracle_row(sim)
    assert {k: row[k] for k in expected} == expected


# ------------------------------------------------------------------------ known facts


def test_nearest_after_stride_two_has_jump_one_and_period_two():
    spec = {"name": "s", "layers": [{"op": "conv", "kernel": 1, "stride": 2},
                                    {"op": "upsample", "factor": 2}]}
    sim = simulate(spec, 10)
    for axis in sim.axes:
        assert [int(v) for v in axis.lo[:6]] == [0, 0, 2, 2, 4, 4]
        found = jump(axis)
        assert (found.jump, found.period, found.shift) == (1, 2, 2)


@pytest.mark.parametrize("mode, offset", [("nearest", [1, -1]), ("bilinear", [-1, 1])])
def test_same_unet_block_is_misaligned_by_half_a_pixel(mode, offset):
    """'same' conv, 2x2 pool, 'same' conv, x2 upsampling, concat with the first conv: the
    skip centres its box on y, the upsampled path's boxes alternate y +- 1/2 (bilinear too,
    although its weighted centre is y: alignment compares box centres)."""
    spec = {"name": "block", "layers": [
        {"name": "c1", "op": "conv", "kernel": 3, "padding": "same"},
        {"name": "pool", "op": "maxpool", "kernel": 2, "stride": 2},
        {"name": "c2", "op": "conv", "kernel": 3, "padding": "same"},
        {"name": "up", "op": "upsample", "factor": 2, "mode": mode},
        {"name": "cat", "op": "concat", "inputs": ["c1", "up"]}]}
    assert not simulate(spec, 16).aligned
    skip = simulate({**spec, "output": "c1"}, 16).axes[0]
    up = simulate({**spec, "output": "up"}, 16).axes[0]
    assert ((up.lo + up.hi) - (skip.lo + skip.hi)).tolist() == offset * 8  # 2 x centre shift
    assert jump(skip).jump == jump(up).jump == 1


def test_bilinear_x2_boxes_alternate():
    """src = (2y - 1) / 4: units read [-1, 0], [0, 1], [0, 1], [1, 2], ... [n - 1, n]."""
    sim = simulate(one("upsample", factor=2, mode="bilinear"), 5)
    expected = [(-1, 0), (0, 1), (0, 1), (1, 2), (1, 2), (2, 3), (2, 3), (3, 4), (3, 4),
                (4, 5)]
    assert boxes(sim) == expected
    axis = sim.axes[0]
    assert (rf(axis), padding(axis), jump(axis).jump, jump(axis).period) == (2, 1,
                                                                             Fraction(1, 2), 2)


def test_transposed_conv_k4_s2_p1_boxes():
    """y receives x when y = 2x - 1 + t, t < 4: the bilinear x2 pattern, out 2n."""
    sim = simulate(one("conv_transpose", kernel=4, stride=2, padding=1), 5)
    assert boxes(sim) == boxes(simulate(one("upsample", factor=2, mode="linear"), 5))


@FEW
@given(st.integers(1, 6), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 3), st.integers(0, 3), st.integers(0, 2))
def test_transpose_reads_follow_the_definition(n, k, s, d, p, q, o):
    """Every stored unit: y reads x iff y = x s - p + t d for a tap t < k (scatter)."""
    length, origin = n + 12, 6
    try:
        reads, origin_out, n_out = transpose_reads(k, s, d, p, q, o, (length, origin, n))
    except Invalid:
        assert (n - 1) * s - p - q + d * (k - 1) + o + 1 < 1
        return
    assert n_out == (n - 1) * s - p - q + d * (k - 1) + o + 1
    y = np.arange(reads.length)[:, None] - origin_out
    x = np.arange(length)[None, :] - origin
    taps = y - x * s + p  # t d
    expected = (taps % d == 0) & (taps >= 0) & (taps <= d * (k - 1))
    np.testing.assert_array_equal(reads.dense(length) != 0, expected)


@FEW
@given(st.integers(1, 9), st.integers(1, 4), st.integers(1, 3), st.integers(1, 2),
       st.integers(-2, 3), st.integers(-2, 3), st.booleans())
def test_window_reads_and_ceil_mode_sizes(n, k, s, d, p, q, ceil):
    """reduce_window reads x = y s - p + t d; its sizes are PyTorch's arithmetic (floor,
    or ceil then minus one when the last window starts at or after n + p)."""
    span = d * (k - 1) + 1
    expected = -(-(n + p + q - span) // s) + 1 if ceil else (n + p + q - span) // s + 1
    if ceil and (expected - 1) * s >= n + p:
        expected -= 1
    length, origin = n + 16, 8
    if expected < 1:
        with pytest.raises(Invalid):
            window_reads("maxpool", k, s, d, p, q, ceil, (length, origin, n))
        return
    reads, origin_out, n_out = window_reads("maxpool", k, s, d, p, q, ceil,
                                            (length, origin, n))
    assert n_out == expected
    y = np.arange(reads.length)[:, None] - origin_out
    taps = np.arange(length)[None, :] - origin - (y * s - p)
    expected = (taps % d == 0) & (taps >= 0) & (taps < span)
    np.testing.assert_array_equal(reads.dense(length) != 0, expected)


@pytest.mark.parametrize("mode, method", [("nearest", "nearest"), ("linear", "linear"),
                                          ("cubic", "cubic")])
@pytest.mark.parametrize("n, f", [(5, 2), (7, 3)])
def test_interpolation_matches_jax_image_resize_inside(mode, method, n, f):
    """Units whose taps all lie inside the image read what jax.image.resize reads (its
    cubic has A = -0.5, PyTorch's -0.75: the same taps); align_corners by
    jax.image.scale_and_translate with scale (n f - 1) / (n - 1)."""
    origin = 8
    for align in (False, True) if mode != "nearest" else (False,):
        reads, origin_out, n_out = upsample_reads(mode, f, align, (n + 16, origin, n))
        mine = reads.dense(n + 16)[origin_out:origin_out + n_out] != 0
        ident = jnp.eye(n)
        if align:
            scale = (n * f - 1) / (n - 1)
            theirs = jax.image.scale_and_translate(
                ident, (n, n * f), (1,), jnp.array([scale]), jnp.array([0.5 - scale / 2]),
                method, antialias=False)
        else:
            theirs = jax.image.resize(ident, (n, n * f), method, antialias=False)
        theirs = np.abs(np.asarray(theirs).T) > 1e-6  # [n f, n]
        taps, weights = source_taps(mode, f, n, align, np.arange(n * f))
        inside = np.where(weights != 0, (taps >= 0) & (taps < n), True).all(axis=1)
        assert inside.sum() >= 2
        np.testing.assert_array_equal(mine[inside][:, origin:origin + n], theirs[inside])
        assert not mine[inside][:, :origin].any() and not mine[inside][:, origin + n:].any()


def test_original_unet_maps_572_to_388():
    """572 -> 388. Unpadded, so every box lies inside the input (unit 0 reads [0, 187],
    the last one [384, 571]). The four 2x2 up-convolutions give the boxes period 16
    (shift 16: jump 1): within a period they are 188 or 204 wide. The shortest path
    (the top skip: four 3x3 convs) sees 9. The up-convolved maps are misaligned with
    their cropped skips by a quarter of the coarse unit (+-1/2 of the fine one)."""
    sim = simulate(unet(), 572)
    assert sim.sizes == (388, 388)
    for axis in sim.axes:
        widths = axis.hi - axis.lo + 1
        assert (rf(axis), int(widths.min()), rf_min(axis), padding(axis)) == (204, 188, 9, 0)
        assert (jump(axis).shift, jump(axis).period) == (16, 16)
        assert (int(axis.hi[0]), int(axis.lo[-1]), int(axis.hi[-1])) == (187, 384, 571)
    assert not sim.aligned and sim.rates_equal


@pytest.mark.parametrize("kernel, levels", [(2, 3), (3, 4), (5, 2)])
def test_tcn_receptive_field(kernel, levels):
    """Bai et al.: RF = 1 + 2 (k - 1) (2^L - 1); causal: unit y reads [y - RF + 1, y]."""
    sim = simulate(tcn(kernel, levels), 6)
    field = 1 + 2 * (kernel - 1) * (2 ** levels - 1)
    axis = sim.axes[0]
    assert sim.dims == 1 and sim.sizes == (6,)
    assert boxes(sim) == [(y - field + 1, y) for y in range(6)]
    assert (rf(axis), padding(axis), rf_min(axis)) == (field, field - 1, 1)
    assert sim.aligned is False  # the 1x1 residual centres on y, the causal path before it


def test_wavenet_receptive_field():
    """Kernel 2, dilations 1..512, three stacks: 3 * 1023 + 1 = 3070; the initial causal
    convolution (kernel 2) adds one: 3071."""
    sim = simulate(wavenet(), 3, paths=False)
    assert boxes(sim) == [(y - 3069, y) for y in range(3)]
    with_initial = simulate(wavenet(initial_causal=True), 3, paths=False)
    assert rf(with_initial.axes[0]) == 3071


# ------------------------------------------------- an independent check: autodiff support


def layer_1d(layer: dict, inputs: list):
    """One layer of a 1-D network on whole maps: all-ones weights, identity activations,
    zero padding by ``lax.pad`` (negative: a crop); a max pool is summed (its gradient
    would reach only the argmax) and a concat is a sum (the next conv sums channels)."""
    op, x = layer["op"], inputs[0]
    k, s, d = (axis_value(layer.get(key, 1), 0, 1) for key in ("kernel", "stride", "dilation"))
    if op in ("add", "concat"):
        return sum(inputs)
    if op in ("conv", "maxpool", "avgpool"):
        p, q = pair(0 if layer.get("padding") == "valid" else layer.get("padding", 0), 0, 1)
        return lax.reduce_window(lax.pad(x, 0.0, [(p, q, 0)]), 0.0, lax.add, (k,), (s,),
                                 "VALID", window_dilation=(d,))
    if op == "conv_transpose":
        p, extra = pair(layer.get("padding", 0), 0, 1)[0], layer.get("output_padding", 0)
        return lax.conv_transpose(x[None, None], jnp.ones((1, 1, k)), (s,),
                                  [(d * (k - 1) - p, d * (k - 1) - p + extra)],
                                  rhs_dilation=(d,), dimension_numbers=("NCH", "OIH", "NCH"))[0, 0]
    if op == "crop":
        before, after = pair(layer["crop"], 0, 1)
        return x[before:len(x) - after]
    return x  # element-wise


def autodiff_support(spec: dict, n: int) -> list[np.ndarray]:
    """For each output unit of a 1-D network, the input units its gradient reaches."""
    layers = normalized_layers(spec)
    by_name = {layer["name"]: layer for layer in layers}

    def forward(x):
        maps = {"input": x}
        for name in topological_order(layers):
            maps[name] = layer_1d(by_name[name], [maps[i] for i in by_name[name]["inputs"]])
        return maps[output_name(spec, layers)]

    jacobian = np.asarray(jax.jit(jax.jacrev(forward))(jnp.ones(n)))  # [n_out, n]
    return [np.flatnonzero(row) for row in jacobian]


@pytest.mark.parametrize("name", ["unet", "tcn"])
def test_boxes_are_the_autodiff_support(name):
    """Where every read is a real unit (U-Net) or the virtual ones lie before the input
    (causal TCN), each unit's box clipped to the input is the hull of the input units its
    gradient reaches, through a forward pass of real jax operators; the reads are
    contiguous there."""
    spec, n = (unet(dims=1), 572) if name == "unet" else (tcn(3, 3), 40)
    axis = simulate(spec, n, paths=False).axes[0]
    support = autodiff_support(spec, n)
    assert len(support) == axis.size
    for lo, hi, reached in zip(axis.lo, axis.hi, support, strict=True):
        assert reached.tolist() == list(range(max(lo, 0), min(hi, n - 1) + 1))


# --------------------------------------------------------------- op equivalences, 1-D/3-D


@pytest.mark.parametrize("r, n", [(2, 8), (3, 9), (4, 4)])
def test_pixel_unshuffle_is_a_k_eq_s_eq_r_window(r, n):
    mine = simulate(one("pixel_unshuffle", factor=r), n)
    window = simulate(one("maxpool", kernel=r, stride=r), n)
    assert boxes(mine) == boxes(window) and mine.sizes == (n // r,)
    with pytest.raises(Invalid):
        simulate(one("pixel_unshuffle", factor=r), n + 1)


def test_pixel_shuffle_is_nearest_upsampling():
    for r in (2, 3):
        assert boxes(simulate(one("pixel_shuffle", factor=r), 5)) == boxes(
            simulate(one("upsample", factor=r), 5))


def test_crop_and_negative_padding():
    assert boxes(simulate(one("crop", crop=[[2, 1]]), 7)) == [(y, y) for y in range(2, 6)]
    neg = simulate(one("conv", kernel=3, padding=[[-1, -2]]), 9)
    assert boxes(neg) == [(y, y + 2) for y in range(1, 5)]
    with pytest.raises(Invalid):
        simulate(one("crop", crop=[[3, 4]]), 7)


def test_invalid_networks():
    with pytest.raises(Invalid):
        simulate(one("conv", kernel=5), 3)
    bad_merge = {"name": "m", "layers": [{"name": "a", "op": "conv", "kernel": 3},
                                         {"name": "b", "op": "add", "inputs": ["a", "input"]}]}
    with pytest.raises(Invalid):
        simulate(bad_merge, 8)


def test_units_reading_nothing():
    """conv_transpose k=1 s=2: odd units read nothing. In a DAG one path dead along H and
    the other along W leave unit (1, 1) reading nothing with every axis unit live."""
    sim = simulate(one("conv_transpose", kernel=1, stride=2), 4)
    assert sim.reads_nothing and sim.axes[0].live.tolist() == [True, False] * 3 + [True]
    dag = {"name": "cross", "layers": [
        {"name": "a", "op": "conv_transpose", "kernel": [1, 2], "stride": 2},
        {"name": "ac", "op": "crop", "crop": [[0, 0], [0, 1]]},
        {"name": "b", "op": "conv_transpose", "kernel": [2, 1], "stride": 2,
         "inputs": ["input"]},
        {"name": "bc", "op": "crop", "crop": [[0, 1], [0, 0]]},
        {"name": "sum", "op": "add", "inputs": ["ac", "bc"]},
    ]}
    sim = simulate(dag, 3)
    assert sim.reads_nothing and all(a.live.all() for a in sim.axes)


def test_three_d_axes_match_1d_and_a_real_3d_operator():
    """Each axis of a 3-D network equals the 1-D network of that axis' values, and the
    outputs a 3-D jax conv_transpose reaches from one input unit are the product of the
    per-axis reads."""
    k, s, p, d, n = (2, 3, 4), (1, 2, 3), (0, 1, 2), (1, 2, 1), (3, 4, 5)
    layers = [{"op": "conv_transpose", "kernel": list(k), "stride": list(s),
               "padding": list(p), "dilation": list(d)},
              {"op": "upsample", "factor": [2, 1, 3], "mode": "trilinear"},
              {"op": "crop", "crop": [[1, 0], [0, 1], [2, 2]]}]
    sim = simulate({"name": "3d", "layers": layers}, n)
    for axis in range(3):
        flat = [{key: [v[axis]] if isinstance(v, list) else v for key, v in layer.items()}
                for layer in layers]
        alone = simulate({"name": "1d", "dims": 1, "layers": flat}, n[axis])
        assert boxes(sim, axis) == boxes(alone)
    source = (1, 2, 3)
    impulse = jnp.zeros((1, 1, *n)).at[(0, 0, *source)].set(1.0)
    reach = [di * (ki - 1) - pi for ki, pi, di in zip(k, p, d, strict=True)]
    out = jax.lax.conv_transpose(impulse, jnp.ones((1, 1, *k)), s, [(r, r) for r in reach],
                                 rhs_dilation=d, dimension_numbers=("NCDHW", "OIDHW", "NCDHW"))
    reached = []
    for a in range(3):
        reads, origin_out, n_out = transpose_reads(k[a], s[a], d[a], p[a], p[a], 0,
                                                   (n[a] + 12, 6, n[a]))
        column = reads.dense(n[a] + 12)[origin_out:origin_out + n_out, 6 + source[a]]
        reached.append(np.flatnonzero(column))
    expected = {(x, y, z) for x in reached[0] for y in reached[1] for z in reached[2]}
    assert {tuple(map(int, h)) for h in np.argwhere(np.asarray(out[0, 0]) != 0)} == expected


def test_period_helper():
    """The smallest T with one shift K for lo and hi; dead units recur; None if none fits."""
    lo = np.array([0, 0, 2, 2, 4, 4])
    assert period(lo, lo + 1) == Period(2, 2) and Period(2, 2).jump == 1
    assert period(np.arange(6), np.arange(6), np.array([True, False] * 3)) == Period(2, 2)
    assert period(np.array([0, 5]), np.array([1, 3])) is None


# ------------------------------------------------------------------ the new strategies


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("op", NEW_OPS)
def test_strategies_draw_valid_networks(op, dims):
    """Every new op on every number of axes: drawn networks simulate (the strategy's size
    arithmetic agrees with the oracle) and more margin changes nothing."""

    @settings(max_examples=2, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(networks(dims=dims, required=op, with_sizes=True))
    def check(drawn):
        spec, input_size, sizes = drawn
        sim = simulate(spec, input_size, paths=False)
        assert sim.sizes == sizes
        wider = simulate(spec, input_size, paths=False, extra_margin=7)
        for a, b in zip(sim.axes, wider.axes, strict=True):
            assert np.array_equal(a.lo, b.lo) and np.array_equal(a.hi, b.hi)
            assert a.aligned == b.aligned
        assert not sim.axes[0].rates_equal or jump(sim.axes[0], virtual=True) is not None

    check()
