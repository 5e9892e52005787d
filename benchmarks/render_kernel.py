"""The kernel, end-to-end, anatomy and search tables (``kernel_throughput.py``,
``end_to_end.py``, ``kernel_anatomy.py``, ``search_throughput.py``)."""

from __future__ import annotations

from render_format import (
    Row,
    check,
    dag_label,
    kernel_device,
    quick,
    rate,
    seconds,
    status,
    table,
    timed,
)


def chunked_rows(part: dict, label: str, key: str) -> list[Row]:
    """One row per chunk size the benchmark timed, the driver's default marked."""
    figures = [fig for fig in part.get(key, []) if "cand_per_s" in fig]
    size = "unknown size" if key == "chunked_unknown_size" else "input 224×224"
    default = (part["driver_unknown_size"]["chunk"] if key == "chunked_unknown_size"
               else figures[0]["chunk"] if figures else None)  # 224: only the driver's chunk
    return [timed(f"{label}, {size}, {fig['chunk']:,} rows per call"
                  + (" (driver default)" if fig["chunk"] == default else ""), "same", fig)
            for fig in figures]


def driver_pair_rows(figures: dict | None, label: str, what: str, suffix: str) -> list[Row]:
    """Rows for the driver's chunk at both sizes (XLA's DAG program, shared topologies)."""
    if not figures:
        return []
    pairs = (("unknown size", figures["driver_unknown_size"]),
             ("input 224×224", figures["driver_size_224"]))
    return [timed(f"{label}, {size}, {fig['chunk']:,} rows per call {suffix}",
                  what if i == 0 else "same", fig) for i, (size, fig) in enumerate(pairs)]


def kernel_rows(res: dict) -> list[Row]:
    """Every row of the kernel throughput table."""
    ch, dag = res["chains"], res["dags"]
    chain_what = f"{ch['n']:,} chains × {ch['layers']} layers"
    dag_what = f"{dag['n']:,} DAGs × {dag['layers']} layers, ≤ {dag['max_inputs']} inputs per node"
    dags = dag_label(dag)
    shared = dag["shared_topology"]
    shared_what = f"DAG #{shared['network']} of those, {shared['n']:,} times"
    native = ch.get("native")
    compiled = [] if not native else [
        ("Chains, compiled CPU program (`driver.run_batch`), unknown input size, "
         f"{native['unknown_size']['chunk']:,} rows per call", chain_what,
         rate(native["unknown_size"]["cand_per_s"]), "–"),
        ("Chains, compiled CPU program, input 224×224", "same",
         rate(native["size_224"]["cand_per_s"]), "–")]
    xla = "Chains, XLA's program (GPUs, TPUs)" if native else "Chains"
    return [
        *compiled,
        timed(f"{xla}, unknown input size, one call", chain_what, ch["unknown_size"]),
        *chunked_rows(ch, xla, "chunked_unknown_size"),
        timed(f"{xla}, input 224×224, one call", chain_what, ch["size_224"]),
        *chunked_rows(ch, xla, "chunked_size_224"),
        ("numpy baseline (same chains, int64)", chain_what, rate(ch["numpy"]["cand_per_s"]), "–"),
        (f"{'Compiled program' if native else 'Kernel (driver chunks)'} speed-up over numpy",
         "", f"{ch['speedup_vs_numpy']:.2f}×", ""),
        timed(f"{dags}, unknown input size, one call", dag_what, dag["unknown_size"]),
        *chunked_rows(dag, dags, "chunked_unknown_size"),
        timed(f"{dags}, input 224×224, one call", dag_what, dag["size_224"]),
        *chunked_rows(dag, dags, "chunked_size_224"),
        *driver_pair_rows(dag.get("xla_program"), "DAGs, XLA's program (GPUs; CPUs without a "
                          "C++ compiler)", "same", "(its driver default)"),
        *driver_pair_rows(shared, "DAGs sharing one topology", shared_what, "(driver default)"),
    ]


def kernel_target(res: dict, key: str, label: str) -> Row:
    """One kernel target: chains or DAGs per second (``label`` names them)."""
    t = res["targets"][key]
    return check(label, rate(t["value"]), t["value"], t["target"],
                 f"≥ {t['target'] / 1e6:g} M/s")


def target_rows(res: dict) -> list[Row]:
    """The kernel targets: chains, chains over numpy, DAGs."""
    numpy = res["targets"]["chains_speedup_vs_numpy"]
    return [kernel_target(res, "chains_cand_per_s", "chains"),
            check("chains over numpy", f"{numpy['value']:.2f}×", numpy["value"],
                  numpy["target"], f"≥ {numpy['target']:g}×"),
            kernel_target(res, "dags_cand_per_s", "DAGs")]


def render_kernel(res: dict) -> list[str]:
    """The kernel throughput section (``benchmarks/kernel_throughput.py``), with the driver
    end to end per chunk size."""
    ch = res["chains"]
    run_batch = [(str(fig["input_size"] or "unknown"),
                  f"{fig['chunk']:,}" + (" (driver default)" if fig["driver_default"] else ""),
                  f"{fig['median_s']:.3f} s", rate(fig["cand_per_s"])) for fig in ch["run_batch"]]
    return [
        "Candidates per second of `rfsearch.kernel.propagate`, inputs already on the device, "
        "laid out as the driver lays them out (these random networks are square: one stored "
        f"axis), median of {res['repeats']} runs; compile = first call less one run. Chunked "
        f"rows run {res.get('driver_workers', 1)} calls at a time, as the driver does (one per "
        "CPU core). Targets are judged at the driver's chunk size.",
        *table(("what", "batch", "throughput", "compile"), kernel_rows(res), "llrr"),
        f"Device: {kernel_device(res)}; jax {res['versions']['jax']}; {res['date']}{quick(res)}.",
        *table(("what", "measured", "target", "status"), target_rows(res), "lrrl"),
        f"`driver.run_batch` on the same {ch['n']:,} chains, end to end (host layout, "
        "transfer, kernel, results back on the host), by rows per call: how the driver's "
        f"default chunk sizes were chosen (median of {res['repeats']}).",
        *table(("input size", "rows per call", "time", "throughput"), run_batch, "lrrr"),
    ]


def render_end_to_end(res: dict) -> list[str]:
    """The end-to-end section (``benchmarks/end_to_end.py``)."""
    d, n = res["dags"], res["n"]
    dags = f"`evaluate`, {d['n']:,} random DAGs of {d['layers']} layers at {d['input_size']}"
    rows = [(f"load the Parquet table (target about {res['load_target_s']:g} s: "
             f"{status(res['load_target_met'])})", seconds(res["load_s"]), ""),
            ("`evaluate` (error messages and DataFrame included)", seconds(res["evaluate_s"]),
             rate(n / res["evaluate_s"])),
            (f"`write_parquet` ({res['result_mb']:.1f} MB)", seconds(res["write_s"]), ""),
            *invalid_rows(res.get("invalid")),
            *((f"{dags}, {name}", seconds(d[f"{key}_evaluate_s"]),
               rate(d["n"] / d[f"{key}_evaluate_s"]))
              for key, name in (("native", "compiled CPU kernel"), ("xla", "XLA's program"))
              if f"{key}_evaluate_s" in d),
            *spec_file_rows(res.get("spec_file")),
            *decoder_rows(res.get("decoders"))]
    return [f"{n:,} ragged chains of up to {res['max_layers']} layers from a Parquet table to "
            f"a Parquet table of results at input {res['input_size']}, median of "
            f"{res['repeats']}.", *table(("stage", "time", "throughput"), rows, "lrr"),
            f"Device: {res['device']}, {res['cpu_cores']} cores; {res['date']}{quick(res)}.", ""]


def invalid_rows(bad: dict | None) -> list[Row]:
    """``evaluate`` on the README's library example, many of whose rows are errors."""
    if not bad:
        return []
    return [(f"`evaluate`, the README's {bad['n']:,} random chains of {bad['layers']} layers "
             f"at {bad['input_size']} ({bad['invalid_rows']:,} invalid: one message each)",
             seconds(bad["evaluate_s"]), rate(bad["n"] / bad["evaluate_s"]))]


def spec_file_rows(f: dict | None) -> list[Row]:
    """``evaluate`` on a JSON Lines file of plain chain specs: read column-wise, and one
    spec at a time (the path before), in the same run."""
    if not f:
        return []
    label = (f"`evaluate`, a JSON Lines file of {f['n']:,} chain specs of {f['layers']} "
             f"layers at {f['input_size']}, reading included")
    return [(f"{label} ({f['speedup']:.1f}× faster than one spec at a time)",
             seconds(f["evaluate_s"]), rate(f["n"] / f["evaluate_s"])),
            (f"{label}, one spec at a time (the path before)",
             seconds(f["per_spec_evaluate_s"]), rate(f["n"] / f["per_spec_evaluate_s"]))]


def decoder_rows(dec: dict | None) -> list[Row]:
    """``evaluate`` on random encoder-decoders from specs: the program chosen (the compiled
    periodic kernel where it runs) and XLA's, measured alternately in the same run."""
    if not dec:
        return []
    chosen = "compiled CPU kernel" if dec.get("program") == "native" else "XLA's program"
    label = (f"`evaluate`, {dec['n']:,} random encoder-decoders from specs at "
             f"{dec['input_size']} (periodic program")
    rows = [(f"{label}, {chosen})", seconds(dec["evaluate_s"]),
             rate(dec["n"] / dec["evaluate_s"]))]
    if "xla_evaluate_s" in dec:
        rows.append((f"{label}, XLA's program)", seconds(dec["xla_evaluate_s"]),
                     rate(dec["n"] / dec["xla_evaluate_s"])))
    return rows


def chain_anatomy_rows(c: dict) -> list[Row]:
    """The chain program on each tile width, XLA's loop emitter and the layer-major layout."""
    tile, widths = str(c["tile"]), c["tiled_spans"]
    return [
        (f"Chains: span program (the kernel's first), tiles of {tile} chains `[N/{tile}, L, 1, "
         f"{tile}]` (as the driver sends them)", f"{c['n']:,} × {c['layers']} layers",
         rate(widths[tile]["cand_per_s"])),
        *((f"Chains: the same program on tiles of {w} chains", "same", rate(f["cand_per_s"]))
          for w, f in widths.items() if w != tile),
        *optional_row("Chains: the same program compiled with XLA's loop emitter (not used "
                      "for chains)", c.get("tiled_spans_loop_emitter")),
        ("Chains: the same recurrence on the layer-major layout `[L, 1, N]` a Batch stores "
         f"(spans agree: {'yes' if c['spans_agree'] else 'NO'})", "same",
         rate(c["layer_major_spans"]["cand_per_s"])),
    ]


def optional_row(label: str, fig: dict | None) -> list[Row]:
    """A row for a figure that older results (or machines) lack."""
    return [(label, "same", rate(fig["cand_per_s"]))] if fig else []


def dag_anatomy_rows(d: dict) -> list[Row]:
    """The compiled DAG kernel, XLA's DAG program, its gather and arithmetic alone, and
    shared topologies."""
    used = "loop" if d.get("loop_emitter") else "default"
    nat = d.get("native")  # the compiled CPU kernel: absent without a C++ compiler
    native = [] if not nat else [
        (f"DAGs: the compiled CPU kernel (`rfsearch.native`, built in {nat['build_s']:.1f} s), "
         f"chunks of {nat['driver_chunk']['chunk']:,} (its driver default)",
         f"{d['n']:,} × {d['nodes']} nodes", rate(nat["driver_chunk"]["cand_per_s"])),
        (f"DAGs: the compiled CPU kernel, chunks of {nat['xla_chunk']['chunk']:,}", "same",
         rate(nat["xla_chunk"]["cand_per_s"]))]
    return [
        *native,
        (f"DAGs: XLA's program, per-network topologies ({used} emitter)",
         "same" if "native" in d else f"{d['n']:,} × {d['nodes']} nodes",
         rate(d["kernel"]["cand_per_s"])),
        *optional_row("DAGs: XLA's program with its default emitter",
                      d.get("kernel_default_emitter")),
        (f"DAGs: gather alone ({d['slot_words']}-word slices from `[L, N, F]`)", "same",
         rate(d["gather_only"]["cand_per_s"])),
        ("DAGs: node arithmetic alone, `[L, N, F]` buffer (no gather)", "same",
         rate(d["arithmetic_only_LNF"]["cand_per_s"])),
        ("DAGs: node arithmetic alone, field-major `[L, F, N]` buffer", "same",
         rate(d["arithmetic_only_LFN"]["cand_per_s"])),
        *optional_row(f"DAGs sharing one topology (DAG #0 repeated): XLA's program ({used} "
                      "emitter)", d.get("shared_kernel")),
        *optional_row("DAGs sharing one topology: XLA's program with its default emitter",
                      d.get("shared_kernel_default_emitter")),
    ]


def render_anatomy(res: dict) -> list[str]:
    """Where the kernel's time goes (``benchmarks/kernel_anatomy.py``)."""
    c, d = res["chains"], res["dags"]
    return [
        f"Chunks of {c['chunk']:,} chains / {d['chunk']:,} DAGs, {res['workers']} calls at a "
        f"time, median of {res['repeats']}; unknown input size.",
        *table(("what", "batch", "throughput"), [*chain_anatomy_rows(c), *dag_anatomy_rows(d)],
              "llr"),
        f"Device: {res['device']['platform']}, {res['device']['cpu_cores']} cores; "
        f"{res['date']}{quick(res)}.",
        "",
    ]


def search_rows(res: dict) -> list[Row]:
    """Each search figure with its target: the grid walk, the grid to Parquet, ofa-mbv3,
    the small spaces and NAS-Bench-101."""
    g, t = res["grid"], res["targets"]
    e = g["end_to_end"]
    rows = [
        walk_row(res, f"64-layer grid walk, filter `{g['where']}` (kernel only)"),
        check(f"{e['candidates']:.0e} candidates of that grid to Parquet ({e['rows']:,} rows)",
              seconds(e["seconds"]), e["seconds"], t["grid_end_to_end_s"],
              f"≤ {t['grid_end_to_end_s']:g} s"),
        ofa_row(res, "ofa-mbv3 exhaustive"),
        *(check(f"`rfsearch search {name} -o DIR`" + (" from the cache" if name == "nasbench101"
                else " (whole space, Python start-up included)"), seconds(fig["seconds"]),
                fig["seconds"], t["small_spaces_s"], f"≤ {t['small_spaces_s']:g} s")
          for name, fig in res["small"].items()),
    ]
    if "nasbench101_generate_s" in res:
        gen, first = res["nasbench101_generate_s"], res.get("nasbench101_first_search_s", 0)
        rows.append(check("NAS-Bench-101: generate the 423,624 cells, then the first search "
                          "(which encodes the cells)", f"{seconds(gen)} + {seconds(first)}",
                          gen + first, 120, "≤ 120 s"))
    return rows


def walk_row(res: dict, label: str) -> Row:
    """The search walk's kernel rate on the 64-layer grid, with its target."""
    per_s, bound = res["grid"]["kernel"]["per_s"], res["targets"]["grid_kernel_per_s"]
    return check(label, f"{per_s / 1e6:,.0f} M cand/s", per_s, bound, f"≥ {bound / 1e6:g} M/s")


def ofa_row(res: dict, label: str) -> Row:
    """ofa-mbv3 exhaustive: measured, or projected from the walk's rate."""
    ofa, bound = res["ofa"], res["targets"]["ofa_exhaustive_s"]
    full = ofa.get("exhaustive")
    took = full["seconds"] if full else ofa["projected_exhaustive_s"]
    how = "measured" if full else "projected from the walk's rate"
    return check(f"{label} ({ofa['size']:.3g} candidates, {how})", seconds(took), took, bound,
                 f"≤ {bound:g} s")


def render_search(res: dict) -> list[str]:
    """The search section (``benchmarks/search_throughput.py``)."""
    k = res["grid"]["kernel"]
    return [
        f"The walk times device calls of {k['candidates_per_call']:,} candidates (median of "
        f"{k['calls']}, compile {seconds(k['first_call_s'])} apart); end to end includes "
        "tabulating, compiling, decoding matches and writing Parquet.",
        *table(("what", "measured", "target", "status"), search_rows(res), "lrrl"),
        f"Device: {res['device']}, {res['cpu_cores']} cores; {res['date']}{quick(res)}.",
        "",
    ]
