"""The tables of the user-facing benchmarks: importing models, streaming, the evaluate
path, DARTS sampling and analysis filters (``import_speed.py``, ``stream_eval.py``,
``evaluate_path.py``, ``darts_search.py``, ``analysis_filter.py``)."""

from __future__ import annotations

from render_format import Row, check, kernel_device, quick, rate, seconds, status, table


def import_rows(res: dict) -> list[Row]:
    """``import_speed.py``: every row of the full table."""
    return [(r["model"], r["framework"], f"{r['params'] / 1e6:.1f} M", str(r["layers"]),
             seconds(r["cold_s"]), seconds(r["median_s"]), f"{r['evaluate_s'] * 1e3:.1f} ms",
             seconds(r["evaluate_first_s"])) for r in res["rows"]]


def import_summary_row(res: dict, model: str) -> Row:
    """The README's row of ``import_speed.py``: the first import of ``model`` in a process,
    every framework, against each framework's bound."""
    rows = [r for r in res["rows"] if r["model"] == model]
    measured = "; ".join(f"{r['framework']} {seconds(r['cold_s'])}" for r in rows)
    bounds = "; ".join(" / ".join(r["framework"] for r in rows if r["target_s"] == b)
                       + f" ≤ {b:g} s" for b in sorted({r["target_s"] for r in rows}, reverse=True))
    return (f"import a {model} at {res['input_size']}, first call in a process", measured,
            bounds, status(all(r["cold_s"] <= r["target_s"] for r in rows)))


def render_import(res: dict) -> list[str]:
    """The import section (``benchmarks/import_speed.py``)."""
    return [f"Whole models at {res['rows'][0]['input']} (torchvision's architectures and "
            "widths, hand-written in `tests/torch_models.py`, their Flax NNX and Keras twins "
            "in `tests/flax_models.py` and `tests/keras_models.py`, and the ONNX file "
            "`torch.onnx.export` writes), into a spec: cold = the first "
            f"call in a fresh Python process (median of {res.get('processes', 1)} processes), "
            f"warm = median of {res['repeats']} calls after it; `evaluate` of the spec at "
            f"{res['input_size']}, median and first call.",
            *table(("model", "framework", "parameters", "layers", "import, cold",
                    "import, warm", "`evaluate`", "`evaluate`, first"),
                   import_rows(res), "llrrrrrr"),
            "Targets, on the cold ResNet-50 import: "
            + ", ".join(f"{k} ≤ {v:g} s" for k, v in res["targets_s"].items())
            + f": {status(res['target_met'])}. Device: {kernel_device(res)}; "
            f"{', '.join(f'{k} {v}' for k, v in res['versions'].items())}; "
            f"{res['date']}{quick(res)}.", ""]


def stream_row(res: dict) -> Row:
    """``stream_eval.py``: ``rfsearch eval`` of a large chain table, time and memory."""
    ok = res["rows_in_order"] and res["peak_rss_gb"] <= res["target_gb"]
    return check(f"`rfsearch eval`, {res['n']:,} ragged chains at {res['input_size']}, "
                 "Parquet to Parquet (peak memory)",
                 f"{seconds(res['seconds'])} ({res['peak_rss_gb']:.2f} GB)",
                 res["seconds"] if ok else float("inf"), res["target_s"],
                 f"≤ {res['target_s']:g} s, ≤ {res['target_gb']:g} GB")


def render_stream(res: dict) -> list[str]:
    """The streaming section (``benchmarks/stream_eval.py``)."""
    return [f"`rfsearch eval` of {res['n']:,} random ragged chains (8 to 16 layers; "
            f"{res['input_mb']:.0f} MB of Parquet) at {res['input_size']} into "
            f"{res['output_mb']:.0f} MB of results, in a child process: wall time and peak "
            "resident memory; every row written, in order: "
            f"{'yes' if res['rows_in_order'] else 'NO'}.",
            *table(("what", "measured", "target", "status"), [stream_row(res)], "lrrl"),
            f"{res['cpu_cores']} cores; {res['date']}{quick(res)}.", ""]


def _size_label(size: str) -> str:
    return "unknown input size" if size == "None" else f"input {size}"


def evaluate_rows(res: dict) -> list[Row]:
    """``evaluate_path.py``: each stage at each input size, and numpy beside it."""
    rows = []
    for size, at in res["sizes"].items():
        n, where = at["n"], _size_label(size)
        rows += [
            (f"`chains(...)` from int32 arrays, {where}", seconds(at["chains_s"]),
             rate(n / at["chains_s"])),
            (f"`evaluate(batch)` on the built chains, DataFrame included, {where}",
             seconds(at["evaluate_s"]), rate(at["evaluate_cand_per_s"])),
            (f"`chains` + `evaluate`, {where}", seconds(at["path_s"]),
             rate(at["path_cand_per_s"])),
            (f"`write_parquet` of the result, {where}", seconds(at["write_parquet_s"]), "–"),
            (f"numpy recurrence on the Batch's layer-major arrays, {where}",
             seconds(at["numpy_batch_s"]), rate(n / at["numpy_batch_s"])),
            (f"numpy recurrence on the user's [N, L] arrays (faster of columns "
             f"{seconds(at['numpy_columns_s'])}, transposed first "
             f"{seconds(at['numpy_transposed_s'])}), {where}", seconds(at["numpy_user_s"]),
             rate(n / at["numpy_user_s"])),
        ]
    return rows


def evaluate_checks(res: dict) -> list[Row]:
    """The targets of ``evaluate_path.py`` at each input size."""
    rows = []
    for size, at in res["sizes"].items():
        t, where = res["targets"][size], _size_label(size)
        rows += [
            check(f"`evaluate`, {at['n']:,} built {res['layers']}-layer chains, {where}",
                  rate(at["evaluate_cand_per_s"]), at["evaluate_cand_per_s"],
                  t["evaluate_cand_per_s"]["target"],
                  f"≥ {rate(t['evaluate_cand_per_s']['target'])}"),
            check(f"`evaluate` over numpy, {where}", f"{at['evaluate_vs_numpy']:.1f}×",
                  at["evaluate_vs_numpy"], t["evaluate_vs_numpy"]["target"],
                  f"≥ {t['evaluate_vs_numpy']['target']:g}×"),
            check(f"`chains` + `evaluate` over numpy, {where}", f"{at['path_vs_numpy']:.1f}×",
                  at["path_vs_numpy"], t["path_vs_numpy"]["target"],
                  f"≥ {t['path_vs_numpy']['target']:g}×"),
        ]
    return rows


def render_evaluate(res: dict) -> list[str]:
    """The evaluate-path section (``benchmarks/evaluate_path.py``)."""
    agree = all(at["agrees_with_numpy"] for at in res["sizes"].values())
    return [f"A user's whole path for {next(iter(res['sizes'].values()))['n']:,} random "
            f"square chains of {res['layers']} layers held as int32 `[N, L]` arrays: "
            "`rfsearch.chains(...)`, `rfsearch.evaluate(batch)` (names, geometry, errors, "
            "a DataFrame) and `write_parquet`, beside the same recurrence in numpy (int64, one "
            f"vectorised step per layer), median of {res['repeats']} runs; every row equals "
            f"numpy's: {'yes' if agree else 'NO'}.",
            *table(("what", "time", "rate"), evaluate_rows(res), "lrr"),
            *table(("target", "measured", "target", "status"), evaluate_checks(res), "lrrl"),
            f"Device: {kernel_device(res)}; {res['date']}{quick(res)}.", ""]


def darts_row(res: dict) -> Row:
    """``darts_search.py``: DARTS sampled to Parquet, against its target."""
    t, b = res["targets"]["darts_sample_per_s"], res["batched"]
    return check(f"`search darts --sample {b['runs'][0]['n']:,}`, to Parquet (per spec "
                 f"before: {rate(res['per_spec']['per_s'])})", rate(b["per_s"]), b["per_s"],
                 t["target"], f"≥ {rate(t['target'])}")


def render_darts(res: dict) -> list[str]:
    """The DARTS section (``benchmarks/darts_search.py``)."""
    b, old = res["batched"], res["per_spec"]
    return [f"`rfsearch search darts --sample N -o DIR` at input {res['input_size']}: "
            "sampled genotypes encoded as batches of DAGs and run by the DAG kernel, to "
            f"Parquet; median of {len(b['runs'])} runs, after a warm-up of "
            f"{b['warmup']['n']:,} ({seconds(b['warmup']['seconds'])}); beside it the "
            f"per-spec path it replaced, on {old['n']:,} candidates, in the same run "
            f"({res['speedup']:.0f}× slower).",
            *table(("what", "measured", "target", "status"), [darts_row(res)], "lrrl"),
            f"{b['cpu_us_per_candidate']:.1f} µs of CPU per candidate. Device: "
            f"{kernel_device(res)}; {res['date']}{quick(res)}.", ""]


def evaluate_summary_rows(res: dict) -> list[Row]:
    """The README's rows of ``evaluate_path.py``: per input size, ``evaluate`` on built
    chains and the whole path from arrays, each against its targets."""
    rows = []
    for size, at in res["sizes"].items():
        t = res["targets"][size]
        met = all(t[k]["met"] for k in ("evaluate_cand_per_s", "evaluate_vs_numpy",
                                        "path_vs_numpy"))
        rows.append((f"`evaluate`, {at['n']:,} built {res['layers']}-layer chains, "
                     f"{_size_label(size)}, DataFrame included (in brackets: `chains` + `evaluate` "
                     "from int32 arrays)",
                     f"{rate(at['evaluate_cand_per_s'])}, {at['evaluate_vs_numpy']:.1f}× numpy "
                     f"({at['path_vs_numpy']:.1f}×)",
                     f"≥ {rate(t['evaluate_cand_per_s']['target'])}, "
                     f"≥ {t['evaluate_vs_numpy']['target']:g}× numpy "
                     f"(≥ {t['path_vs_numpy']['target']:g}×)", status(met)))
    return rows


def _space_label(fig: dict) -> str:
    ids = fig["ids"]
    where = f"ids {ids[0]:,}:{ids[1]:,}" if ids else "whole space"
    return f"`search {fig['space']}`, {where}, input {fig['input_size']}"


def analysis_rows(res: dict, first_per_space: bool = False) -> list[Row]:
    """``analysis_filter.py``: each search against its target (``first_per_space``: one
    per space, the README's rows)."""
    rows, seen = [], set()
    for name, fig in res["figures"].items():
        if first_per_space and fig["space"] in seen:
            continue
        seen.add(fig["space"])
        t, run = res["targets"][name], fig["analysis"]
        rows.append(check(f"{_space_label(fig)}, where `{run['where']}` (analysis in the walk)",
                          f"{rate(run['per_s'])} (walk alone {rate(run['walk_per_s'])})",
                          run["per_s"], t["target_per_s"], f"≥ {rate(t['target_per_s'])}"))
    return rows


def render_analysis(res: dict) -> list[str]:
    """The analysis-filter section (``benchmarks/analysis_filter.py``)."""
    rows = []
    for fig in res["figures"].values():
        for kind in ("analysis", "baseline"):
            if run := fig.get(kind):
                rows.append((_space_label(fig), f"`{run['where']}`", f"{run['candidates']:,}",
                             f"{run['rows']:,}", seconds(run["median_s"]), rate(run["per_s"]),
                             rate(run["walk_per_s"]), seconds(run["first_run_s"])))
    return [f"`rfsearch search` to Parquet with an analysis column in `--where` (computed in "
            "the device walk), and beside it the same search without the analysis term; "
            f"median of {res['runs']} runs, the first reported apart (it compiles and "
            "tabulates); walk alone: the chunk loop (the device walk, the rows with "
            "`border_layer`, the Parquet parts) without the set-up (loading and tabulating "
            "the space).",
            *table(("search", "where", "candidates", "rows", "time", "rate", "walk alone",
                    "first run"), rows, "llrrrrrr"),
            *table(("target", "measured", "target", "status"), analysis_rows(res), "lrrl"),
            *_set_up_bound(res),
            f"Device: {kernel_device(res)}; {res['date']}{quick(res)}.", ""]


def _set_up_bound(res: dict) -> list[str]:
    """A sentence per missed target whose whole space takes under a second at the target
    rate: its run is bound by the set-up (loading and tabulating the space), not the walk."""
    lines = []
    for name, fig in res["figures"].items():
        t, run = res["targets"][name], fig["analysis"]
        at_target = run["candidates"] / t["target_per_s"]
        if not t["met"] and at_target < 1:
            walk = run["candidates"] / run["walk_per_s"]
            lines.append(f"{_space_label(fig)}: at the target rate its {run['candidates']:,} "
                         f"candidates would take {seconds(at_target)} in all, Parquet "
                         f"included; a run takes {seconds(run['median_s'])}, of which the "
                         f"walk and output {seconds(walk)}: the rest is loading and "
                         "tabulating the space, work per candidate, not per chunk. "
                         "The target is not met.")
    return [*lines, ""] if lines else []
