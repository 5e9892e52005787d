#!/usr/bin/env bash
# One run of the benchmarks on whatever accelerator JAX sees (or the CPU), within 8 minutes:
# the kernel, the user's evaluate path, end to end from Parquet, the search walk, DARTS
# sampling and analysis filters. Each script writes its JSON under
# benchmarks/results/<platform>-<device kind>/ (or the folder given as $1), with the device
# in it; a script that fails or runs past its share of the 8 minutes is reported and
# skipped. Render the README's accelerator rows afterwards with
#   python benchmarks/render_readme.py
# Needs only rfsearch's own dependencies (jax with the accelerator's plugin, numpy, pandas,
# pyarrow, tqdm): the repository runs from its source tree, nothing is installed.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
name=$("$PY" -c 'import jax; d = jax.devices()[0]
print("-".join((d.platform, d.device_kind)).lower().replace(" ", "-").replace("/", "-"))') || {
    echo "device_run: jax cannot see a device" >&2; exit 1; }
dest=${1:-benchmarks/results/$name}
mkdir -p "$dest"
echo "device_run: $name -> $dest"
status=0

run() {  # run SECONDS SCRIPT [ARGS...]: one benchmark, its JSON into $dest
    local limit=$1 script=$2
    shift 2
    local start=$SECONDS
    if timeout --kill-after=10 "$limit" "$PY" "benchmarks/$script.py" --out "$dest/$script.json" "$@"; then
        echo "device_run: $script done in $((SECONDS - start)) s"
    else
        echo "device_run: $script failed or ran past $limit s (exit $?)" >&2
        status=1
    fi
}

# Shares of the 8 minutes (480 s), by the work each does; the host-bound parts (numpy
# baselines, the per-spec DARTS path, NAS-Bench-101's cells) take as long as on a CPU.
run 120 kernel_throughput --repeats 5
run 50 evaluate_path --repeats 3
run 40 end_to_end --repeats 3
run 110 search_throughput
run 50 darts_search --runs 2 --baseline 500
run 110 analysis_filter --runs 2
exit $status
