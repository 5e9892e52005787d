"""Random PyTorch models for the importers' oracle tests: chains of every op the importers
map on 1, 2 and 3 axes, some with a 1x1 side branch merged back by add or cat. Shared by
the PyTorch importer's gradient oracle and the ONNX importer's impulse oracle."""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

C = 4  # channels of the random models


class Random(nn.Module):
    """A chain of mapped ops, some with a 1x1 side branch merged back by add or cat."""

    def __init__(self, recipe: list[tuple], dims: int, act=nn.ReLU, pool="max"):
        super().__init__()
        self.recipe, self.dims, self.pool = recipe, dims, pool
        conv = getattr(nn, f"Conv{dims}d")
        self.layers = nn.ModuleList()
        for op, p in recipe:
            if op == "conv":
                m = conv(C, C, p["k"], p["s"], p["p"], p["d"])
            elif op == "transpose":
                m = getattr(nn, f"ConvTranspose{dims}d")(C, C, p["k"], p["s"], p["p"],
                                                         p["o"], dilation=p["d"])
            elif op in ("branch_add", "branch_cat"):
                m = nn.ModuleList([conv(C, C, 1), conv(2 * C if op == "branch_cat" else C,
                                                       C, 1)])
            elif op == "shuffle":
                m = conv(C // p["r"] ** 2, C, 1)
            elif op == "unshuffle":
                m = conv(C * p["r"] ** 2, C, 1)
            else:
                m = act()
            self.layers.append(m)

    def forward(self, x):
        d = self.dims
        for (op, p), m in zip(self.recipe, self.layers, strict=True):
            if op in ("conv", "transpose", "act"):
                x = m(x)
            elif op == "pool":
                f = getattr(F, f"{self.pool}_pool{d}d")
                x = f(x, p["k"], p["s"], p["p"], ceil_mode=p["ceil"])
            elif op == "upsample":
                mode = {"linear": ("linear", "bilinear", "trilinear")[d - 1]}.get(
                    p["mode"], p["mode"])
                x = F.interpolate(x, scale_factor=p["f"], mode=mode,
                                  align_corners=p["ac"] if p["mode"] != "nearest" else None)
            elif op == "pad":
                x = F.pad(x, p["pads"][: 2 * d])
            elif op == "crop":
                a, b = p["cut"]
                x = x[..., a:x.shape[-1] - b]
            elif op == "shuffle":
                x = m(F.pixel_shuffle(x, p["r"]))
            elif op == "unshuffle":
                x = m(F.pixel_unshuffle(x, p["r"]))
            else:
                side = m[0](x)
                x = m[1](x + side if op == "branch_add" else torch.cat([x, side], 1))
        return x


@st.composite
def recipes(draw, dims: int):
    ops = ["conv", "conv", "pool", "upsample", "transpose", "pad", "crop", "act",
           "branch_add", "branch_cat"] + (["shuffle", "unshuffle"] if dims == 2 else [])
    recipe = []
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(ops))
        if op == "conv":
            p = {"k": draw(st.integers(1, 3)), "s": draw(st.integers(1, 2)),
                 "p": draw(st.integers(0, 2)), "d": draw(st.integers(1, 2))}
        elif op == "pool":
            k = draw(st.integers(2, 3))
            p = {"k": k, "s": draw(st.integers(1, 2)), "p": draw(st.integers(0, k // 2)),
                 "ceil": draw(st.booleans())}
        elif op == "upsample":
            mode = draw(st.sampled_from(["nearest", "linear"] + (["bicubic"] if dims == 2
                                                                else [])))
            p = {"f": 2, "mode": mode, "ac": draw(st.booleans())}
        elif op == "transpose":
            s = draw(st.integers(1, 2))
            p = {"k": draw(st.integers(s, 4)), "s": s, "p": draw(st.integers(0, 1)),
                 "o": draw(st.integers(0, s - 1)), "d": 1}
        elif op == "pad":
            p = {"pads": [draw(st.integers(0, 2)) for _ in range(6)]}
        elif op == "crop":
            p = {"cut": (draw(st.integers(0, 2)), draw(st.integers(0, 2)))}
        elif op in ("shuffle", "unshuffle"):
            p = {"r": 2}
        else:
            p = {}
        recipe.append((op, p))
    return [*recipe, ("conv", {"k": 1, "s": 1, "p": 0, "d": 1})]  # never an identity model
