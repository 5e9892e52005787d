"""Several local devices: the id range is sharded over them, with the same results.

Runs in a subprocess with two forced CPU devices (XLA's host-platform device count).
The grid has 8^8 candidates, so the walk has several prefix rows per call to shard.
"""

import json
import os
import subprocess
import sys

import rfsearch

GRID = {"name": "g", "input_size": 64, "layers": [
    {"op": "conv", "kernel": [1, 3, 5, 7], "dilation": [1, 2], "stride": 2, "padding": "same"},
    *[{"op": "conv", "kernel": [1, 3, 5, 7], "dilation": [1, 2], "padding": "same"}] * 7]}
WALK = {"where": "candidate_id % 100003 == 7 and rf_h > 20"}
SAMPLE = {"where": "rf_h > 20", "sample": 3000, "seed": 1, "chunk": 1024}

SCRIPT = """
import json, sys, jax, rfsearch
assert jax.device_count() == 2
grid, walk, sample = json.loads(sys.argv[1])
a, b = rfsearch.search(grid, **walk), rfsearch.search(grid, **sample)
print(json.dumps([a.candidate_id.tolist(), a.rf_h.tolist(), b.candidate_id.tolist()]))
"""


def test_two_devices_give_the_single_device_rows():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps([GRID, WALK, SAMPLE])],
                          env=env, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ids, rf, sampled = json.loads(proc.stdout.strip().splitlines()[-1])
    a, b = rfsearch.search(GRID, **WALK), rfsearch.search(GRID, **SAMPLE)
    assert ids == a["candidate_id"].tolist() and rf == a["rf_h"].tolist() and len(ids) > 100
    assert sampled == b["candidate_id"].tolist()
