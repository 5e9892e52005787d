"""The command line: exit codes, one-line messages, no tracebacks, Parquet output."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from frames import frame_rows
from search_cases import VALID, read_folder, sorted_top

from rfsearch.cli import main

EXAMPLES = "datasets/examples/classic.jsonl"


def run(*args):
    return subprocess.run([sys.executable, "-m", "rfsearch.cli", *args], capture_output=True,
                          text=True, check=False)


def test_eval_prints_table_and_exits_0(capsys):
    assert main(["eval", EXAMPLES, "--input-size", "224"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["name", "rf_h", "rf_w"]
    resnet18 = next(line for line in out.splitlines() if line.strip().startswith("resnet18"))
    assert resnet18.split()[1:3] == ["435", "435"]


def test_eval_writes_parquet_with_bad_rows_and_exits_1(tmp_path):
    specs = tmp_path / "nets.jsonl"
    specs.write_text(json.dumps({"name": "ok", "layers": [{"op": "conv", "kernel": 3}]}) + "\n"
                     + json.dumps({"name": "foo", "layers": [
                         {"op": "conv", "kernel": 3},
                         {"name": "c2", "op": "conv", "kernel": 3, "stride": 0}]}) + "\n")
    out = tmp_path / "out.parquet"
    proc = run("eval", str(specs), "-o", str(out), "--input-size", "32x16", "--quiet")
    assert proc.returncode == 1
    assert proc.stderr == (
        f"rfsearch: {specs}: spec #1 'foo', layer #1 'c2': stride must be a positive integer, "
        "got 0\n")
    assert "Traceback" not in proc.stderr
    df = pd.read_parquet(out)
    assert df["name"].tolist() == ["ok", "foo"]
    assert df["out_h"].tolist()[0] == 30 and df["out_w"].tolist()[0] == 14


def test_usage_errors_exit_2():
    assert run("eval", EXAMPLES, "--input-size", "0").returncode == 2
    assert run("eval").returncode == 2
    assert run().returncode == 2
    proc = run("frobnicate")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_missing_file_is_exit_1_one_line():
    proc = run("eval", "nope.json", "--quiet")
    assert proc.returncode == 1
    assert proc.stderr == "rfsearch: nope.json: no such file\n"


def test_show_prints_per_layer_table(capsys):
    assert main(["show", "datasets/examples/toy.json", "--input-size", "224"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("toy at 224x224: rf 27x11, rf_min 11, stride 4, padding 11x3, out 56, "
                        "aligned yes")
    assert lines[1].split() == ["layer", "op", "k", "s", "d", "p", "rf", "stride", "padding",
                                "out"]
    assert lines[4].split() == ["b", "conv", "3x1", "1", "2", "2x0", "27x11", "4", "11x3", "56"]


def test_show_gives_the_period_where_boxes_repeat_after_several_units(tmp_path, capsys):
    """A stride-2 conv then nearest x2: stride 1 but units 0 and 1 read one box (period 2);
    show had no period, so the table read as if every unit stepped by one pixel."""
    spec = tmp_path / "up.json"
    spec.write_text(json.dumps({"name": "u", "layers": [
        {"op": "conv", "kernel": 3, "stride": 2, "padding": 1},
        {"op": "upsample", "factor": 2, "mode": "nearest"}]}))
    assert main(["show", str(spec), "--input-size", "16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "u at 16x16: rf 3, rf_min 3, stride 1, period 2, padding 1, out 16, " \
                       "aligned yes"
    assert lines[1].split() == ["layer", "op", "k", "s", "d", "p", "rf", "stride", "period",
                                "padding", "out"]
    assert lines[3].split()[-5:] == ["3", "1", "2", "1", "16"]


def test_show_rejects_files_with_several_specs(capsys):
    assert main(["show", EXAMPLES]) == 1
    assert capsys.readouterr().err == f"rfsearch: {EXAMPLES}: holds 4 specs; show takes one\n"


def test_show_with_an_input_size_of_other_axes_is_one_line(tmp_path, capsys):
    """show (and zoo show --per-layer) raised a zip() ValueError with a traceback."""
    vol = tmp_path / "vol.json"
    vol.write_text(json.dumps({"name": "vol", "dims": 3, "layers": [
        {"name": "c1", "op": "conv", "kernel": 3, "padding": 1}]}))
    assert main(["show", str(vol), "--input-size", "8x8"]) == 1
    assert capsys.readouterr().err == (f"rfsearch: {vol}: spec #0 'vol': input size 8x8 has "
                                       "2 axes; this network has 3\n")
    assert main(["zoo", "show", "resnet18", "--input-size", "8x8x8", "--per-layer"]) == 1
    assert capsys.readouterr().err.endswith("input size 8x8x8 has 3 axes; this network has "
                                            "2\n")


@pytest.mark.parametrize("command", ["eval", "show", "zoo list", "zoo show", "zoo export", "import",
                                     "search", "spaces", "plot growth", "plot boxes",
                                     "plot results"])
def test_every_command_is_documented_in_the_readme(command):
    with open("README.md") as fh:
        readme = fh.read()
    assert f"rfsearch {command} " in readme


def test_show_reads_a_one_row_chain_table(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "one.parquet"
    pq.write_table(pa.table({"kernel": [[3, 3, 3]], "dilation": [[2, 2, 2]],
                             "name": ["only"]}), path)
    assert main(["show", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "only: rf 13, rf_min 13, stride 1, padding 0, aligned yes"
    assert lines[-1].split()[:6] == ["layer2", "conv", "3", "1", "2", "0"]


def test_output_problems_are_found_before_the_work(tmp_path):
    proc = run("eval", EXAMPLES, "-o", str(tmp_path / "missing" / "x.parquet"), "--quiet")
    assert proc.returncode == 1
    assert proc.stderr == (f"rfsearch: {tmp_path / 'missing' / 'x.parquet'}: cannot write the "
                           f"output: no folder {str(tmp_path / 'missing')!r}\n")
    proc = run("eval", EXAMPLES, "-o", str(tmp_path), "--quiet")
    assert proc.stderr == (f"rfsearch: {tmp_path}: cannot write the output: it names a folder, "
                           "not a file\n")
    assert run("eval", EXAMPLES, "--chunk-size", "0").returncode == 2


def test_zoo_list_names_every_network(capsys):
    from rfsearch import zoo

    assert main(["zoo", "list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == zoo.names()


def test_zoo_show_fits_a_100_column_terminal(capsys):
    assert main(["zoo", "show", "resnet50", "--input-size", "224", "--per-layer"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("resnet50 at 224x224: rf 427, rf_min 11, stride 32, padding 213, "
                        "out 7, aligned yes")
    assert max(map(len, lines)) <= 100
    layer4 = next(line for line in lines if line.startswith("layer4 "))
    assert layer4.split() == ["layer4", "relu", "1", "1", "1", "0", "427", "32", "213", "7"]


def test_zoo_show_reports_misalignment_without_failing(capsys):
    assert main(["zoo", "show", "nasbench201", "--input-size", "32"]) == 0
    assert capsys.readouterr().out.strip().endswith("aligned no")


def test_zoo_export_then_eval(tmp_path, capsys):
    path = tmp_path / "v3.json"
    assert main(["zoo", "export", "inception_v3", "-o", str(path), "-q"]) == 0
    assert json.loads(path.read_text())["name"] == "inception_v3"
    assert main(["eval", str(path), "zoo:inception_v3", "--input-size", "299"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[1] for row in rows] == ["1311", "1311"]


def test_bad_zoo_names_are_one_line_errors():
    proc = run("zoo", "show", "resnet5")
    assert (proc.returncode, proc.stderr) == (
        1, "rfsearch: unknown zoo network 'resnet5' (did you mean 'resnet50'?)\n")
    proc = run("eval", "zoo:vgg_17", "--quiet")
    assert proc.returncode == 1 and proc.stderr.startswith("rfsearch: unknown zoo network")


# --- rfsearch search, rfsearch spaces -------------------------------------------------------

@pytest.fixture
def grid_file(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(VALID))
    return path


def test_cli_search_prints_the_top_rows(grid_file, capsys, full):
    _, df, _ = full["valid@64"]
    assert main(["search", str(grid_file), "--top", "2", "--by", "rf_h"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[0] == "candidate_id" and "rf_h" in header and "valid" in header
    want = sorted_top(df, "rf_h", 2, False)
    assert len(lines) == 3
    for line, row in zip(lines[1:], frame_rows(want), strict=True):
        cells = dict(zip(header, line.split(), strict=True))
        assert int(cells["candidate_id"]) == row["candidate_id"]
        assert int(cells["rf_h"]) == row["rf_h"]


def test_cli_search_where_ids_and_output(grid_file, tmp_path, capsys, full):
    _, df, _ = full["valid@64"]
    assert main(["search", str(grid_file), "--where", "candidate_id < 3", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [int(line.split()[0]) for line in lines[1:]] == [0, 1, 2]
    out = tmp_path / "out"
    assert main(["search", str(grid_file), "--ids", "10:50", "-o", str(out), "-q"]) == 0
    pd.testing.assert_frame_equal(read_folder(out), df.iloc[10:50].reset_index(drop=True))
    slash = f"{tmp_path / 'new'}/"  # a folder still to make, named as a folder (the docs'
    assert main(["search", str(grid_file), "--ids", "10:50", "-o", slash, "-q"]) == 0  # -o out/)
    pd.testing.assert_frame_equal(read_folder(tmp_path / "new"), read_folder(out))
    assert main(["search", str(grid_file), "--where", "valid", "--sample", "40", "--seed",
                 "1", "-q"]) == 0
    assert main(["search", str(grid_file), "--where", "not valid and valid", "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(no rows)"


def test_cli_search_bad_where_is_one_line_exit_1(grid_file, capsys):
    assert main(["search", str(grid_file), "--where", "rf >= 3"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rfsearch: where 'rf >= 3': unknown "
                                                   "column 'rf' (did you mean")
    assert main(["search", str(grid_file), "--where", "rf_h = 3"]) == 1
    assert "(use == to compare)" in capsys.readouterr().err
    assert main(["search", str(grid_file), "--top", "3", "--by", "nope"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_search_usage_errors_exit_2(grid_file, capsys):
    for args in (["--top", "0"], ["--sample", "-1"], ["--ids", "3"], ["--chunk", "x"],
                 ["--sample", "5", "--seed", "-1"], ["--ids", "-1:3"]):
        with pytest.raises(SystemExit) as info:
            main(["search", str(grid_file), *args])
        assert info.value.code == 2
    # a negative start: said (argparse reported the range as missing)
    assert "ids from 0 (e.g. 0:1000), got '-1:3'" in capsys.readouterr().err


def test_cli_spaces_lists_the_builtin_spaces(capsys):
    assert main(["spaces"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines[1:]]
    assert {"nasbench201", "ofa-mbv3", "natsbench-sss", "anynet", "regnet",
            "efficientnet"} <= set(names)
    row = next(line for line in lines if line.startswith("nasbench201 "))
    assert "15,625" in row
    assert "21,924,480,357" in next(line for line in lines if line.startswith("ofa-mbv3 "))


@pytest.mark.parametrize(("options", "words"), [
    (["--top", "3"], "--top and --by go together"),
    (["--by", "rf_h"], "--top and --by go together"),
    (["--ascending"], "--ascending orders --top"),
    (["--partition-by", "arch_str"], "--partition-by needs -o OUT_DIR and no --top"),
])
def test_search_options_that_do_not_go_together_are_usage_errors(options, words, capsys):
    """They exited 1 with the Python API's words ('top and by go together')."""
    with pytest.raises(SystemExit) as done:
        main(["search", "nasbench201", *options])
    assert done.value.code == 2
    assert f"rfsearch search: error: {words}" in capsys.readouterr().err


def test_bare_command_groups_name_their_choices(capsys):
    for argv, choices in ((["zoo"], "{list,show,export}"), (["plot"], "{growth,boxes,results}")):
        with pytest.raises(SystemExit):
            main(argv)
        assert capsys.readouterr().err.endswith(f"the following arguments are required: "
                                                f"{choices}\n")
