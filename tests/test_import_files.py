"""Model files on the command line and wherever a spec is accepted: ``rfsearch import``,
``eval``, ``show`` and ``plot`` on .onnx, .keras, .h5 and .pt2 files, and bad files, each
one clear line and exit 1."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
onnx = pytest.importorskip("onnx")
keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import rfsearch  # noqa: E402
from rfsearch.cli import main  # noqa: E402


def onnx_model(path, *, dynamic: bool = False, extra: str | None = None) -> str:
    """conv 3x3 s2 p1 -> relu -> maxpool 2 -> resize x2 (nearest) [-> an op no rule maps]."""
    size = ["h", "w"] if dynamic else [32, 32]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1],
                              strides=[2, 2], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Resize", ["p", "", "scales"], ["y"], name="up",
                              mode="nearest", coordinate_transformation_mode="asymmetric",
                              nearest_mode="floor")]
    if extra:
        nodes.append(helper.make_node(extra, ["y", "axis"], ["z"], name="odd"))
    out = "z" if extra else "y"
    inits = [numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.array(3, np.int64), "axis")]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, *size])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return str(path)


def keras_model(path) -> str:
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, name="c1"),
                              keras.layers.MaxPooling2D(name="pool"),
                              keras.layers.Conv2D(4, 3, padding="same", name="c2")],
                             name="tiny")
    model.save(path)
    return str(path)


def keras2_h5(path) -> str:
    """A Keras 2 (tf.keras) file as it stores its graph: model_config with nested-list
    inbound nodes and batch_input_shape."""
    config = {"class_name": "Model", "config": {"name": "legacy", "layers": [
        {"class_name": "InputLayer", "name": "input_1",
         "config": {"batch_input_shape": [None, 32, 32, 3], "name": "input_1"},
         "inbound_nodes": []},
        {"class_name": "Conv2D", "name": "conv",
         "config": {"name": "conv", "kernel_size": [3, 3], "strides": [2, 2],
                    "padding": "same", "dilation_rate": [1, 1]},
         "inbound_nodes": [[["input_1", 0, 0, {}]]]},
        {"class_name": "Activation", "name": "act",
         "config": {"name": "act", "activation": "relu"},
         "inbound_nodes": [[["conv", 0, 0, {}]]]}],
        "input_layers": [["input_1", 0, 0]], "output_layers": [["act", 0, 0]]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
    return str(path)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_import_writes_a_spec_that_evaluates_like_the_model(tmp_path, capsys):
    model = onnx_model(tmp_path / "tiny.onnx")
    code, _, err = run(capsys, "import", model, "-o", str(tmp_path / "spec.json"))
    assert code == 0 and "wrote tiny" in err and "traced at 32x32" in err
    spec = json.loads((tmp_path / "spec.json").read_text())
    assert [layer["name"] for layer in spec["layers"]] == ["conv", "relu", "pool", "up"]
    row = rfsearch.evaluate(spec, input_size=32).iloc[0]
    assert (row["rf_h"], row["stride_h"], row["stride_den_h"], row["out_h"]) == (5, 2, 1, 16)
    direct = rfsearch.evaluate(model, input_size=32).iloc[0]
    assert direct["rf_h"] == row["rf_h"] and direct["name"] == "tiny"


def test_eval_show_and_plot_take_model_files(tmp_path, capsys):
    files = [onnx_model(tmp_path / "a.onnx"), keras_model(tmp_path / "b.keras"),
             keras2_h5(tmp_path / "c.h5")]
    code, out, _ = run(capsys, "eval", *files, "--input-size", "32")
    assert code == 0 and out.count("\n") == 4
    df = rfsearch.evaluate(files, input_size=32)
    assert df["error"].isna().all()
    assert df["rf_h"].tolist() == [5, 8, 3]
    code, out, _ = run(capsys, "show", files[1], "--input-size", "32")
    assert code == 0 and "c1" in out and "pool" in out
    pytest.importorskip("matplotlib")
    picture = tmp_path / "growth.png"
    code, _, _ = run(capsys, "plot", "growth", files[0], "-o", str(picture),
                     "--input-size", "32")
    assert code == 0 and picture.stat().st_size > 0


def test_fixed_size_model_files_are_evaluated_at_their_own_size(tmp_path, capsys):
    """Without --input-size, a model file fixed at 32x32 gave null out_h and padding."""
    files = [onnx_model(tmp_path / "a.onnx"), keras_model(tmp_path / "b.keras")]
    alone = rfsearch.evaluate(files)
    given = rfsearch.evaluate(files, input_size=32)
    assert alone.equals(given) and alone["out_h"].notna().all()
    assert alone.attrs["input_size"] == [32, 32]
    code, out, _ = run(capsys, "eval", files[1])
    assert code == 0 and out.split("\n")[1].split()[-1] == str(given["out_w"].iloc[1])
    mixed = rfsearch.evaluate([files[1], "zoo:resnet18"])  # each row at its own size
    assert mixed["out_h"].isna().tolist() == [False, True]
    assert mixed.attrs["input_size"] is None
    dynamic = onnx_model(tmp_path / "d.onnx", dynamic=True)  # still needs a size
    assert "give input_size" in rfsearch.evaluate(dynamic)["error"].iloc[0]
    code, out, _ = run(capsys, "show", files[1])  # says the size it used
    assert code == 0 and out.startswith("tiny at 32x32:") and " out " in out.splitlines()[0]
    box = rfsearch.coords.ReceptiveField.of(files[1])
    assert (box.rf, box.padding) == ((given["rf_h"].iloc[1],) * 2,
                                     (given["padding_h"].iloc[1],) * 2)


def test_saved_torch_programs_import_with_their_module_names(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1), torch.nn.ReLU(),
                                torch.nn.MaxPool2d(2))
    program = torch.export.export(model.eval(), (torch.zeros(1, 3, 32, 32),))
    torch.export.save(program, tmp_path / "seq.pt2")
    code, out, _ = run(capsys, "import", str(tmp_path / "seq.pt2"))
    spec = json.loads(out)
    assert code == 0 and [layer["name"] for layer in spec["layers"]] == ["0", "1", "2"]
    assert spec["name"] == "seq" and spec["source"]["tracer"] == "torch.export (saved program)"


def test_import_without_a_model_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["import"])
    assert exit_.value.code == 2 and "give a model file" in capsys.readouterr().err


def test_list_ops_prints_what_each_importer_maps(capsys):
    for framework, op in (("onnx", "Conv"), ("keras", "Conv2D"), ("jax", "reduce_window_max")):
        code, out, _ = run(capsys, "import", "--list-ops", framework)
        assert code == 0 and op in out.split()


def test_a_dynamic_size_needs_input_size(tmp_path, capsys):
    model = onnx_model(tmp_path / "dyn.onnx", dynamic=True)
    code, _, err = run(capsys, "import", model)
    assert code == 1 and "dynamic spatial size" in err and "--input-size" in err
    assert err.count("\n") == 1
    code, out, _ = run(capsys, "import", model, "--input-size", "64")
    assert code == 0 and json.loads(out)["source"]["input_size"] == "64x64"


def corrupt(path) -> str:
    path.write_bytes(b"\x08\x07garbage" * 10)
    return str(path)


def truncated_onnx(tmp_path) -> str:
    full = onnx_model(tmp_path / "full.onnx")
    data = Path(full).read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 3])
    return str(tmp_path / "cut.onnx")


def truncated_keras(tmp_path) -> str:
    full = keras_model(tmp_path / "full.keras")
    data = Path(full).read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    return str(tmp_path / "cut.keras")


def empty_archive(tmp_path) -> str:
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as z:
        z.writestr("metadata.json", "{}")
    return str(tmp_path / "empty.keras")


@pytest.mark.parametrize("make, words", [
    (lambda p: corrupt(p / "bad.onnx"), "cannot read"),
    (truncated_onnx, "cannot read"),
    (lambda p: corrupt(p / "bad.keras"), "cannot read"),
    (truncated_keras, "cannot read"),
    (empty_archive, "cannot read"),
    (lambda p: str(p / "missing.onnx"), "no such file"),
    (lambda p: onnx_model(p / "odd.onnx", extra="CumSum"), "1 unsupported op: odd"),
    (lambda p: "datasets/examples/toy.json", "not a model file (the importers read .onnx"),
    (lambda p: str(p), "a folder, not a model file"),
], ids=["corrupt-onnx", "truncated-onnx", "corrupt-keras", "truncated-keras",
        "keras-without-config", "missing", "unsupported-op", "a-spec", "a-folder"])
def test_bad_files_are_one_line_and_exit_1(tmp_path, capsys, make, words):
    path = make(tmp_path)
    code, out, err = run(capsys, "import", path)
    assert code == 1 and out == ""
    assert err.startswith("rfsearch: ") and err.count("\n") == 1 and words in err


def test_a_corrupt_torch_program_is_one_line_without_torchs_log(tmp_path):
    """torch.export.load logs a traceback before it raises; stderr holds our line only."""
    import subprocess
    import sys

    bad = corrupt(tmp_path / "bad.pt2")
    proc = subprocess.run([sys.executable, "-m", "rfsearch.cli", "import", bad],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (f"rfsearch: {bad}: cannot load a torch.export program "
                           "(BadZipFile: File is not a zip file)\n")
