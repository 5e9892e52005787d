"""Render the README's benchmark section: what throughput did the last kernel benchmark measure,
and does it meet the targets?

Reads ``benchmarks/results/*.json`` (files written by ``kernel_throughput.py``), picks the
newest full run (a ``--quick`` smoke run only when there is no full one) and rewrites the
block between ``<!-- benchmarks:start -->`` and ``<!-- benchmarks:end -->`` in README.md
with a small table. Every number comes from the JSON; nothing else in the README changes.

    python benchmarks/render_readme.py                  # README.md at the repository root
    python benchmarks/render_readme.py --readme /tmp/README.md --results benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
BENCHMARK = "kernel_throughput"


def load_results(folder: Path, benchmark: str = BENCHMARK) -> dict | None:
    """The newest full result of ``benchmark`` in ``folder`` (else the newest quick one)."""
    runs = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"render_readme: skipping {path}: {exc}", file=sys.stderr)
            continue
        if isinstance(data, dict) and data.get("benchmark") == benchmark:
            runs.append((not data.get("quick", False), data.get("date", ""), data))
    if not runs:
        return None
    return max(runs, key=lambda r: (r[0], r[1]))[2]


def rate(x: float) -> str:
    """Candidates per second in millions, three significant digits."""
    return f"{x / 1e6:.3g} M/s"


def seconds(x: float) -> str:
    return f"{x:.2f} s"


def shared_rows(dag: dict) -> list[tuple[str, str, str, str]]:
    """Rows for DAGs that share one topology (absent from older results)."""
    shared = dag.get("shared_topology")
    if not shared:
        return []
    what = f"DAG #{shared['network']} of those, {shared['n']:,} times (one topology)"
    figures = (("unknown size", shared["driver_unknown_size"]),
               ("input 224×224", shared["driver_size_224"]))
    return [(f"DAGs sharing one topology, {size}, {fig['chunk']:,} rows per call "
             "(driver default)", what if i == 0 else "same", rate(fig["cand_per_s"]),
             seconds(fig["compile_s"]))
            for i, (size, fig) in enumerate(figures)]


def xla_rows(dag: dict) -> list[tuple[str, str, str, str]]:
    """Rows for XLA's DAG program where the compiled CPU kernel ran (absent otherwise)."""
    xla = dag.get("xla_program")
    if not xla:
        return []
    figures = (("unknown size", xla["driver_unknown_size"]),
               ("input 224×224", xla["driver_size_224"]))
    return [(f"DAGs, XLA's program (GPUs; CPUs without a C++ compiler), {size}, "
             f"{fig['chunk']:,} rows per call (its driver default)", "same",
             rate(fig["cand_per_s"]), seconds(fig["compile_s"])) for size, fig in figures]


def render(res: dict) -> str:
    """The markdown that goes between the markers."""
    ch, dag, dev, t = res["chains"], res["dags"], res["device"], res["targets"]
    if dev["platform"] == "cpu":
        device = f"CPU: {dev['cpu_model']}, {dev['cpu_cores']} cores"
    else:
        device = f"{dev['platform']}: {dev['device_kind']} (host {dev['cpu_model']})"

    def met(key: str) -> str:
        return "met" if t[key]["met"] else "**NOT met**"

    chain_what = f"{ch['n']:,} chains × {ch['layers']} layers"
    dags = "DAGs (compiled CPU kernel)" if dag.get("program") == "native" else "DAGs"
    dag_what = (f"{dag['n']:,} DAGs × {dag['layers']} layers, ≤ {dag['max_inputs']} inputs "
                f"per node")
    def chunked(label: str, part: dict, key: str = "chunked_unknown_size",
                size: str = "unknown size") -> list[tuple[str, str, str, str]]:
        figures = [fig for fig in part.get(key, []) if "cand_per_s" in fig]
        if key == "chunked_unknown_size" and "driver_unknown_size" in part:
            default = part["driver_unknown_size"]["chunk"]
        elif key == "chunked_size_224":
            default = figures[0]["chunk"] if figures else None  # only the driver's chunk
        else:  # results written before the driver chose chunks per program
            default = (res.get("driver_default_chunk") if part is ch
                       else res.get("driver_dag_chunk"))
        return [(f"{label}, {size}, {fig['chunk']:,} rows per call"
                 + (" (driver default)" if fig["chunk"] == default else ""),
                 "same",
                 rate(fig["cand_per_s"]), seconds(fig["compile_s"]))
                for fig in figures]

    rows = [
        ("Chains, unknown input size, one call", chain_what,
         rate(ch["unknown_size"]["cand_per_s"]), seconds(ch["unknown_size"]["compile_s"])),
        *chunked("Chains", ch),
        ("Chains, input 224×224, one call", chain_what, rate(ch["size_224"]["cand_per_s"]),
         seconds(ch["size_224"]["compile_s"])),
        *chunked("Chains", ch, "chunked_size_224", "input 224×224"),
        ("numpy baseline (same chains, int64)", chain_what, rate(ch["numpy"]["cand_per_s"]),
         "–"),
        ("Kernel (driver chunks) speed-up over numpy", "", f"{ch['speedup_vs_numpy']:.2f}×",
         ""),
        (f"{dags}, unknown input size, one call", dag_what,
         rate(dag["unknown_size"]["cand_per_s"]), seconds(dag["unknown_size"]["compile_s"])),
        *chunked(dags, dag),
        (f"{dags}, input 224×224, one call", dag_what, rate(dag["size_224"]["cand_per_s"]),
         seconds(dag["size_224"]["compile_s"])),
        *chunked(dags, dag, "chunked_size_224", "input 224×224"),
        *xla_rows(dag),
        *shared_rows(dag),
    ]
    lines = [
        "Kernel throughput (`benchmarks/kernel_throughput.py`): candidates per second of "
        "`rfsearch.kernel.propagate`, inputs already on the device, laid out as the driver "
        "lays them out (these random networks are square: one stored axis), median of "
        f"{res['repeats']} runs; compile = first call less one run. Chunked rows run "
        f"{res.get('driver_workers', 1)} calls at a time, as the driver does (one per CPU "
        "core). Targets are judged at the driver's chunk size, the way `evaluate` calls "
        "the kernel.",
        "",
        "| what | batch | throughput | compile |",
        "| --- | --- | ---: | ---: |",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
        f"Device: {device}; jax {res['versions']['jax']}; {res['date']}"
        f"{' (--quick smoke run, not representative)' if res.get('quick') else ''}.",
        "",
        "| target | measured | status |",
        "| --- | ---: | --- |",
        f"| chains ≥ {t['chains_cand_per_s']['target'] / 1e6:g} M/s "
        f"| {rate(t['chains_cand_per_s']['value'])} | {met('chains_cand_per_s')} |",
        f"| chains ≥ {t['chains_speedup_vs_numpy']['target']:g}× numpy "
        f"| {t['chains_speedup_vs_numpy']['value']:.2f}× | {met('chains_speedup_vs_numpy')} |",
        f"| DAGs ≥ {t['dags_cand_per_s']['target'] / 1e6:g} M/s "
        f"| {rate(t['dags_cand_per_s']['value'])} | {met('dags_cand_per_s')} |",
        "",
        *render_run_batch(ch, res["repeats"]),
        "Re-run: `python benchmarks/kernel_throughput.py && python benchmarks/end_to_end.py "
        "&& python benchmarks/kernel_anatomy.py && python benchmarks/search_throughput.py "
        "--ofa-full --fresh-nasbench101 "
        "&& python benchmarks/render_readme.py`.",
    ]
    return "\n".join(lines)


def render_run_batch(ch: dict, repeats: int) -> list[str]:
    """The driver end to end per chunk size (absent from older results)."""
    if not ch.get("run_batch"):
        return []
    return [
        f"`driver.run_batch` on the same {ch['n']:,} chains, end to end (host layout, "
        "transfer, kernel, results back on the host), by rows per call: how the driver's "
        f"default chunk sizes were chosen (median of {repeats}).",
        "",
        "| input size | rows per call | time | throughput |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {fig['input_size'] or 'unknown'} | {fig['chunk']:,}"
          f"{' (driver default)' if fig['driver_default'] else ''} | "
          f"{fig['median_s']:.3f} s | {rate(fig['cand_per_s'])} |" for fig in ch["run_batch"]),
        "",
    ]


def render_end_to_end(res: dict) -> str:
    """The end-to-end paragraph (``benchmarks/end_to_end.py``)."""
    status = "met" if res["load_target_met"] else "**NOT met**"
    return "\n".join([
        f"End to end (`benchmarks/end_to_end.py`, {res['n']:,} ragged chains of up to "
        f"{res['max_layers']} layers, input {res['input_size']}, median of {res['repeats']}): "
        f"load the Parquet table {seconds(res['load_s'])} (target about "
        f"{res['load_target_s']:g} s: {status}), `evaluate` {seconds(res['evaluate_s'])} "
        f"({rate(res['n'] / res['evaluate_s'])} including error messages and the DataFrame), "
        f"`write_parquet` {seconds(res['write_s'])} ({res['result_mb']:.1f} MB)"
        f"{render_dag_end_to_end(res.get('dags'))}; "
        f"{res['device']}, {res['cpu_cores']} cores, {res['date']}"
        f"{' (--quick smoke run, not representative)' if res.get('quick') else ''}.",
    ])


def render_dag_end_to_end(d: dict | None) -> str:
    """The DAG clause of the end-to-end paragraph (absent from older results)."""
    if not d:
        return ""
    def figure(name: str) -> str:
        s = d[f"{name}_evaluate_s"]
        return f"{seconds(s)} ({rate(d['n'] / s)})"
    text = (f". `evaluate` on {d['n']:,} random DAGs of {d['layers']} layers at "
            f"{d['input_size']}: ")
    if "native_evaluate_s" in d:
        return (text + f"{figure('native')} with the compiled CPU kernel, {figure('xla')} "
                "with XLA's program")
    return text + f"{figure('xla')} (XLA's program)"


def render_search(res: dict) -> str:
    """The search section (``benchmarks/search_throughput.py``)."""
    g, t = res["grid"], res["targets"]
    k, e, ofa = g["kernel"], g["end_to_end"], res["ofa"]

    def status(ok: bool) -> str:
        return "met" if ok else "**NOT met**"
    ofa_full = ofa.get("exhaustive")
    ofa_s = ofa_full["seconds"] if ofa_full else ofa["projected_exhaustive_s"]
    ofa_how = "measured" if ofa_full else "projected from the walk's rate"
    small = res["small"]
    nb101 = small.get("nasbench101")
    rows = [
        (f"64-layer grid walk, filter `{g['where']}` (kernel only)",
         f"{k['per_s'] / 1e6:,.0f} M cand/s", f"≥ {t['grid_kernel_per_s'] / 1e6:g} M/s",
         status(k["per_s"] >= t["grid_kernel_per_s"])),
        (f"{e['candidates']:.0e} candidates of that grid to Parquet ({e['rows']:,} rows)",
         seconds(e["seconds"]), f"≤ {t['grid_end_to_end_s']:g} s",
         status(e["seconds"] <= t["grid_end_to_end_s"])),
        (f"ofa-mbv3 exhaustive ({ofa['size']:.3g} candidates, {ofa_how})", seconds(ofa_s),
         f"≤ {t['ofa_exhaustive_s']:g} s", status(ofa_s <= t["ofa_exhaustive_s"])),
        *((f"`rfsearch search {name} -o DIR` (whole space, Python start-up included)",
           seconds(fig["seconds"]), f"≤ {t['small_spaces_s']:g} s",
           status(fig["seconds"] <= t["small_spaces_s"]))
          for name, fig in small.items() if name != "nasbench101"),
    ]
    if nb101:
        rows.append(("`rfsearch search nasbench101 -o DIR` from the cache",
                     seconds(nb101["seconds"]), "≤ 10 s", status(nb101["seconds"] <= 10)))
    if "nasbench101_generate_s" in res:
        gen, first = res["nasbench101_generate_s"], res.get("nasbench101_first_search_s", 0)
        rows.append(("NAS-Bench-101: generate the 423,624 cells, then the first search "
                     "(which encodes the cells)", f"{seconds(gen)} + {seconds(first)}",
                     "≤ 120 s", status(gen + first <= 120)))
    return "\n".join([
        "Search (`benchmarks/search_throughput.py`): the walk times device calls of "
        f"{k['candidates_per_call']:,} candidates (median of {k['calls']}, compile "
        f"{seconds(k['first_call_s'])} apart); end to end includes tabulating, compiling, "
        "decoding matches and writing Parquet.",
        "",
        "| what | measured | target | status |",
        "| --- | ---: | ---: | --- |",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
        f"Device: {res['device']}, {res['cpu_cores']} cores; {res['date']}"
        f"{' (--quick smoke run, not representative)' if res.get('quick') else ''}.",
    ])


def native_rows(d: dict) -> list[tuple[str, str, str]]:
    """The compiled CPU DAG kernel's rows (absent without a compiler, or from older runs)."""
    nat = d.get("native")
    if not nat:
        return []
    what = f"{d['n']:,} × {d['nodes']} nodes"
    return [(f"DAGs: the compiled CPU kernel (`rfsearch.native`, built in "
             f"{nat['build_s']:.1f} s), chunks of {nat['driver_chunk']['chunk']:,} (its "
             "driver default)", what, rate(nat["driver_chunk"]["cand_per_s"])),
            (f"DAGs: the compiled CPU kernel, chunks of {nat['xla_chunk']['chunk']:,}", "same",
             rate(nat["xla_chunk"]["cand_per_s"]))]


def render_anatomy(res: dict) -> str:
    """Where the kernel's time goes (benchmarks/kernel_anatomy.py)."""
    c, d = res["chains"], res["dags"]
    def optional(label: str, fig: dict | None, batch: str = "same") -> list[tuple]:
        return [] if not fig else [(label, batch, rate(fig["cand_per_s"]))]

    used = "loop" if d.get("loop_emitter") else "default"
    tile = str(c["tile"])
    widths = c["tiled_spans"]
    if "cand_per_s" in widths:  # results from before the kernel read tiles: one width
        widths = {tile: widths}
    rows = [
        (f"Chains: span program (the kernel's first), tiles of {tile} chains `[N/{tile}, L, 1, "
         f"{tile}]` (as the driver sends them)", f"{c['n']:,} × {c['layers']} layers",
         rate(widths[tile]["cand_per_s"])),
        *((f"Chains: the same program on tiles of {w} chains", "same", rate(f["cand_per_s"]))
          for w, f in widths.items() if w != tile),
        *optional("Chains: the same program compiled with XLA's loop emitter (not used for "
                  "chains)", c.get("tiled_spans_loop_emitter")),
        ("Chains: the same recurrence on the layer-major layout `[L, 1, N]` a Batch stores "
         f"(spans agree: {'yes' if c['spans_agree'] else 'NO'})", "same",
         rate(c["layer_major_spans"]["cand_per_s"])),
        *native_rows(d),
        (f"DAGs: XLA's program, per-network topologies ({used} emitter)",
         "same" if "native" in d else f"{d['n']:,} × {d['nodes']} nodes",
         rate(d["kernel"]["cand_per_s"])),
        *optional("DAGs: XLA's program with its default emitter",
                  d.get("kernel_default_emitter")),
        (f"DAGs: gather alone ({d['slot_words']}-word slices from `[L, N, F]`)", "same",
         rate(d["gather_only"]["cand_per_s"])),
        ("DAGs: node arithmetic alone, `[L, N, F]` buffer (no gather)", "same",
         rate(d["arithmetic_only_LNF"]["cand_per_s"])),
        ("DAGs: node arithmetic alone, field-major `[L, F, N]` buffer", "same",
         rate(d["arithmetic_only_LFN"]["cand_per_s"])),
        *optional(f"DAGs sharing one topology (DAG #0 repeated): XLA's program ({used} "
                  "emitter)", d.get("shared_kernel")),
        *optional("DAGs sharing one topology: XLA's program with its default emitter",
                  d.get("shared_kernel_default_emitter")),
    ]
    return "\n".join([
        "Where the kernel's time goes (`benchmarks/kernel_anatomy.py`; chunks of "
        f"{c['chunk']:,} chains / {d['chunk']:,} DAGs, {res['workers']} calls at a time, "
        f"median of {res['repeats']}; unknown input size):",
        "",
        "| what | batch | throughput |",
        "| --- | --- | ---: |",
        *(f"| {a} | {b} | {c_} |" for a, b, c_ in rows),
        "",
        f"Device: {res['device']['platform']}, {res['device']['cpu_cores']} cores; "
        f"{res['date']}{' (--quick smoke run, not representative)' if res.get('quick') else ''}.",
    ])


def replace_block(text: str, body: str) -> str | None:
    """``text`` with the marked block's contents replaced, or None when the markers are absent."""
    start = text.find(START)
    end = text.find(END, start + len(START)) if start >= 0 else -1
    if start < 0 or end < 0:
        return None
    return text[: start + len(START)] + "\n" + body + "\n" + text[end:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--readme", type=Path, default=HERE.parent / "README.md")
    parser.add_argument("--results", type=Path, default=HERE / "results",
                        help="folder of benchmark JSON files")
    args = parser.parse_args(argv)
    res = load_results(args.results)
    if res is None:
        print(f"render_readme: no {BENCHMARK} results in {args.results}", file=sys.stderr)
        return 1
    try:
        text = args.readme.read_text()
    except OSError as exc:
        print(f"render_readme: cannot read {args.readme}: {exc}", file=sys.stderr)
        return 1
    body = render(res)
    end_to_end = load_results(args.results, "end_to_end")
    if end_to_end is not None:
        body = body.replace("\nRe-run:", "\n" + render_end_to_end(end_to_end) + "\n\nRe-run:")
    anatomy = load_results(args.results, "kernel_anatomy")
    if anatomy is not None:
        body = body.replace("\nRe-run:", "\n" + render_anatomy(anatomy) + "\n\nRe-run:")
    search = load_results(args.results, "search_throughput")
    if search is not None:
        body = body.replace("\nRe-run:", "\n" + render_search(search) + "\n\nRe-run:")
    new = replace_block(text, body)
    if new is None:
        print(f"render_readme: {args.readme} lacks the markers {START} ... {END}",
              file=sys.stderr)
        return 1
    if new != text:
        args.readme.write_text(new)
    print(f"render_readme: {args.readme} benchmark block "
          f"{'updated' if new != text else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
