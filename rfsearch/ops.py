"""The operation vocabulary: op names users write, and the op codes the kernel sees.

Geometrically there are only three kinds of node:

* windowed (``conv``, ``maxpool``, ``avgpool``): kernel, stride, dilation, padding;
* element-wise and merge nodes: a window of 1 (k=1, s=1, p=0); merges take the
  union of their inputs' regions;
* whole-map nodes (``global_pool``, ``dense``): a window as large as the map;
* resampling nodes (``upsample``, ``conv_transpose``, ``pixel_shuffle``) make the jump a
  fraction; they, ``crop``, ``pixel_unshuffle``, ceil-mode pooling, negative padding and
  1-D / 3-D networks run the periodic program (:mod:`rfsearch.periodic`).
"""

from __future__ import annotations

import numpy as np

# Op codes stored in Batch.op ([N, L] int8). Node 0 of every network is INPUT.
INPUT = 0
CONV = 1
MAXPOOL = 2
AVGPOOL = 3
ADD = 4
CONCAT = 5
ELEMENTWISE = 6
GLOBAL_POOL = 7
DENSE = 8
UPSAMPLE = 9
CONV_TRANSPOSE = 10
PIXEL_SHUFFLE = 11
PIXEL_UNSHUFFLE = 12
CROP = 13

OP_NAMES: dict[int, str] = {
    INPUT: "input",
    CONV: "conv",
    MAXPOOL: "maxpool",
    AVGPOOL: "avgpool",
    ADD: "add",
    CONCAT: "concat",
    ELEMENTWISE: "identity",
    GLOBAL_POOL: "global_pool",
    DENSE: "dense",
    UPSAMPLE: "upsample",
    CONV_TRANSPOSE: "conv_transpose",
    PIXEL_SHUFFLE: "pixel_shuffle",
    PIXEL_UNSHUFFLE: "pixel_unshuffle",
    CROP: "crop",
}

# "pad": padding alone (a window of 1; negative padding crops), F.pad's geometry
WINDOWED = {"conv": CONV, "maxpool": MAXPOOL, "avgpool": AVGPOOL, "pool": AVGPOOL, "pad": CONV}
MERGES = {"add": ADD, "concat": CONCAT}
WHOLE_MAP = {"global_pool": GLOBAL_POOL, "dense": DENSE}
POOLS = ("maxpool", "avgpool", "pool")  # may round their output size up (ceil_mode)
# Ops of the periodic program only (a network using one never runs the integer kernel).
RESAMPLING = {"upsample": UPSAMPLE, "conv_transpose": CONV_TRANSPOSE,
              "pixel_shuffle": PIXEL_SHUFFLE, "pixel_unshuffle": PIXEL_UNSHUFFLE, "crop": CROP}
# upsample modes: taps read per output unit along an axis (linear: 2, cubic: 4)
UPSAMPLE_MODES = {"nearest": "nearest", "linear": "linear", "bilinear": "linear",
                  "trilinear": "linear", "bicubic": "cubic", "cubic": "cubic"}

# Element-wise ops: activations, normalisation at inference, regularisers, and other
# per-pixel layers. They keep the geometry (k=1, s=1, p=0).
ELEMENTWISE_NAMES = (
    "identity", "relu", "relu6", "leaky_relu", "prelu", "elu", "selu", "gelu", "silu",
    "swish", "hard_swish", "hardswish", "mish", "sigmoid", "hard_sigmoid", "tanh",
    "softmax", "batchnorm", "layernorm", "groupnorm", "instancenorm", "dropout",
    "scale", "bias", "mul", "squeeze_excite",
)
ELEMENTWISE_OPS = dict.fromkeys(ELEMENTWISE_NAMES, ELEMENTWISE)

OP_CODES: dict[str, int] = {**WINDOWED, **MERGES, **WHOLE_MAP, **RESAMPLING,
                             **ELEMENTWISE_OPS}
ALLOWED_OPS = tuple(OP_CODES)

# Padding modes stored as negative codes in Batch.pad_before (pad_after is then 0).
PAD_SAME = -1  # TensorFlow / ONNX SAME_UPPER: the odd pixel goes after
PAD_SAME_LOWER = -2  # ONNX SAME_LOWER: the odd pixel goes before
PAD_MODES = {"same": PAD_SAME, "same_lower": PAD_SAME_LOWER}


def op_names(codes: np.ndarray) -> np.ndarray:
    """Op names for an array of op codes (vectorised lookup)."""
    table = np.array([OP_NAMES[i] for i in range(len(OP_NAMES))], dtype=object)
    return table[np.asarray(codes, dtype=np.int64)]
