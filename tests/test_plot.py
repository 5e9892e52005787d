"""Pictures: every plot command writes a valid, non-blank image of the requested size
(headless Agg backend); bad requests are one-line errors."""

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib.pyplot as plt

import rfsearch
from rfsearch import SpecError, plot, zoo
from rfsearch.cli import main


def assert_image(path, width, height):
    img = plt.imread(str(path))
    assert img.shape[:2] == (height, width)
    assert img[..., :3].std() > 0.02  # not blank


def test_growth(tmp_path):
    out = plot.growth([zoo.build("resnet18"), zoo.build("vgg16")], tmp_path / "g.png",
                      input_size=224, size=(640, 400))
    assert_image(out, 640, 400)


def test_growth_reports_the_networks_it_cannot_draw(tmp_path, capsys):
    """Like eval: the valid networks are drawn, each bad input is one line, exit 1."""
    specs = tmp_path / "specs.jsonl"
    specs.write_text('{"name": "ok", "layers": [{"op": "conv", "kernel": 3}]}\n'
                     '{"name": "bad", "layers": [{"op": "conv", "kernel": 0}]}\n')
    picture = tmp_path / "g.png"
    assert main(["plot", "growth", str(specs), str(tmp_path / "nope.json"),
                 "-o", str(picture)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"wrote {picture}"
    assert "'bad', layer #0 'conv0': kernel must be a positive integer, got 0" in err[1]
    assert err[2] == f"rfsearch: {tmp_path / 'nope.json'}: no such file"
    assert_image(picture, 900, 540)


def test_boxes_with_erf_proxy_and_an_image(tmp_path):
    photo = tmp_path / "photo.png"
    plt.imsave(photo, np.random.default_rng(0).random((96, 128, 3)))
    out = plot.boxes(zoo.build("vgg16"), tmp_path / "b.png", image=photo,
                     features=[(0, 0), (1, 2)], erf=True, size=(500, 500))
    assert_image(out, 500, 500)
    with pytest.raises(SpecError, match=r"feature \(9, 9\) is outside the 3x4 output"):
        plot.boxes(zoo.build("vgg16"), tmp_path / "c.png", image=photo, features=[(9, 9)])


def test_unet_halo_boxes_are_each_units_own(tmp_path, monkeypatch):
    """The U-Net's output boxes repeat with period 16: 188 or 204 px wide. The picture
    draws each feature's own box, read from ReceptiveField.of, not one box for all."""
    drawn = []
    real = plt.Rectangle

    def rectangle(xy, width, height, **kwargs):
        drawn.append((xy, width, height, kwargs.get("label")))
        return real(xy, width, height, **kwargs)

    monkeypatch.setattr(plt, "Rectangle", rectangle)
    out = plot.boxes(zoo.build("unet"), tmp_path / "u.png", input_size=572,
                     features=[(0, 0), (100, 150), (387, 387)], size=(500, 500))
    assert_image(out, 500, 500)
    assert [(w, h) for _, w, h, _ in drawn] == [(188, 188), (204, 204), (188, 188)]
    assert drawn[0][0] == (-0.5, -0.5) and drawn[2][0] == (383.5, 383.5)  # inside the image
    assert drawn[1][3] == "feature (100, 150): 204x204 px"


def test_results_scatter_histogram_and_2d_histogram(tmp_path, monkeypatch):
    folder = tmp_path / "nb"
    rfsearch.search("nasbench201", output=folder, where="valid")
    assert_image(plot.results(folder, tmp_path / "s.png", x="rf_h", y="rf_min_h",
                              hue="padding_h", size=(600, 450)), 600, 450)
    assert_image(plot.results(folder, tmp_path / "h.png", x="rf_h"), 900, 600)
    monkeypatch.setattr(plot, "SCATTER_ROWS", 10)  # force the bounded-memory 2-D histogram
    assert_image(plot.results(folder, tmp_path / "2d.png", x="rf_h", y="rf_min_h"), 900, 600)
    with pytest.raises(SpecError, match="no column 'rf'"):
        plot.results(folder, tmp_path / "x.png", x="rf")
    assert_image(plot.results(folder, tmp_path / "d.png", x="rf_h", y="rf_h"), 900, 600)
    with pytest.raises(SpecError, match="column 'arch_str' holds string, not numbers"):
        plot.results(folder, tmp_path / "x.png", x="rf_h", y="arch_str")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not a table")
    with pytest.raises(SpecError, match="notes: no Parquet files"):
        plot.results(tmp_path / "notes", tmp_path / "x.png", x="rf_h")


def test_cli_writes_svg_and_reports_errors(tmp_path, capsys):
    svg = tmp_path / "g.svg"
    assert main(["plot", "growth", "zoo:alexnet", "-o", str(svg)]) == 0
    assert svg.read_text().lstrip().startswith("<?xml")
    assert main(["plot", "growth", "zoo:alexnet", "-o", str(tmp_path / "g.gif")]) == 1
    assert "plots are written as .png or .svg" in capsys.readouterr().err
    assert main(["plot", "boxes", "zoo:vgg16", "-o", str(tmp_path / "b.png"),
                 "--size", "300x200"]) == 0
    assert_image(tmp_path / "b.png", 300, 200)


def test_results_read_the_partition_columns_of_a_hive_folder(tmp_path):
    grid = {"name": "p", "input_size": 64, "layers": [
        {"op": "conv", "kernel": [1, 3, 5], "stride": 2, "padding": "same"},
        {"op": "conv", "kernel": [3, 5], "padding": "same"}]}
    rfsearch.search(grid, output=tmp_path / "run", partition_by=["layer0.kernel"])
    out = plot.results(tmp_path / "run", tmp_path / "h.png", x="rf_h", y="rf_min_h",
                       hue="layer0.kernel", size=(400, 300))
    assert_image(out, 400, 300)


def test_boxes_legend_gives_the_rows_stride_or_says_there_is_none(tmp_path):
    """The legend read the stride off the period tables, so a misaligned network (its
    row's stride null, its centres uneven) was labelled 'stride 2x2'."""
    from rfsearch.plot import _stride_label

    outmid = {"name": "outmid", "output": "m", "layers": [
        {"op": "conv", "kernel": 3, "stride": 2, "padding": 1},
        {"name": "side", "op": "conv", "kernel": 5, "padding": 2},
        {"op": "conv", "kernel": 3, "stride": 2, "padding": 1, "inputs": "conv0"},
        {"op": "upsample", "factor": 2, "mode": "bilinear", "align_corners": True},
        {"name": "m", "op": "add", "inputs": ["side", "upsample3"]}]}
    up = {"name": "up", "layers": [{"op": "upsample", "factor": 2, "mode": "nearest"},
                                   {"op": "conv", "kernel": [3, 1], "stride": [1, 4]}]}
    rows = rfsearch.evaluate([outmid, up], input_size=(20, 24))
    assert _stride_label(rows.iloc[0]) == "no single stride: paths disagree"
    assert _stride_label(rows.iloc[1]) == "stride 1/2x2"
    assert _stride_label(rfsearch.evaluate(rfsearch.zoo.build("resnet18"),
                                           input_size=224).iloc[0]) == "stride 32"
    spec = tmp_path / "outmid.json"
    spec.write_text(json.dumps(outmid))
    assert main(["plot", "boxes", str(spec), "-o", str(tmp_path / "b.png"),
                 "--input-size", "20x24"]) == 0
    assert (tmp_path / "b.png").stat().st_size > 0


@pytest.mark.parametrize(("dims", "words"), [(1, "1 axis"), (3, "3 axes")])
def test_boxes_of_a_1d_or_3d_network_say_boxes_are_2d(tmp_path, dims, words):
    """It said 'input size 30x30 has 2 axes; this network has 1' for --input-size 30."""
    spec = {"name": "seq", "dims": dims, "layers": [{"op": "conv", "kernel": 3}]}
    with pytest.raises(SpecError, match=f"^plot boxes draws 2-D networks over an image; 'seq' "
                                        f"has {words}$"):
        plot.boxes(spec, tmp_path / "b.png", input_size=30)


def test_growth_takes_1d_and_3d_input_sizes(tmp_path):
    """--input-size took N or HxW only (N became NxN): a 1-D network at 16000 samples and
    a 3-D one at 16x112x112 were refused."""
    for spec, size in (("zoo:tcn", "16000"), ("zoo:r3d_18", "16x112x112")):
        out = tmp_path / f"{spec[4:]}.png"
        assert main(["plot", "growth", spec, "-o", str(out), "--input-size", size]) == 0
        assert_image(out, 900, 540)


def test_boxes_of_a_size_bound_spec_default_to_its_traced_size(tmp_path):
    """A spec imported at 30 x 30 with an adaptive pool holds there only: without
    --input-size, boxes drew it at 224 and the import's own rule refused it."""
    spec = {"name": "bound", "layers": [{"name": "c", "op": "conv", "kernel": 3},
                                        {"name": "p", "op": "avgpool", "kernel": 4,
                                         "stride": 4}],
            "source": {"input_size": "30x30", "size_bound": ["p (an adaptive pool)"]}}
    assert_image(plot.boxes(spec, tmp_path / "b.png", size=(300, 300)), 300, 300)
    with pytest.raises(SpecError, match="imported at 30x30"):
        plot.boxes(spec, tmp_path / "c.png", input_size=64)
