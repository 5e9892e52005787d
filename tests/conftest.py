"""Test configuration: strict JAX promotion, a bounded hypothesis profile, Keras on the
JAX backend (TensorFlow is never needed)."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def toy():
    """The example network of the README and issue #2."""
    return {
        "name": "toy",
        "layers": [
            {"name": "c1", "op": "conv", "kernel": 7, "stride": 2, "padding": 3},
            {"name": "p1", "op": "maxpool", "kernel": 3, "stride": 2, "padding": "same"},
            {"name": "b", "op": "conv", "kernel": [3, 1], "dilation": 2,
             "padding": [[2, 2], [0, 0]]},
            {"name": "sum", "op": "add", "inputs": ["p1", "b"]},
        ],
        "output": "sum",
    }


@pytest.fixture(scope="session")
def full():
    """Every search case's Space, exhaustive result and evaluate() of each candidate
    (search_cases.CASES), computed once for all the search tests."""
    from search_cases import exhaustive

    return exhaustive()


@pytest.fixture
def xla_chain_programs(monkeypatch):
    """Chains run XLA's programs, as on accelerators, instead of the compiled chain
    program CPUs run (which test_native_chain.py compares with them)."""
    from rfsearch import driver

    monkeypatch.setattr(driver, "native_chain", lambda *a, **k: False)
