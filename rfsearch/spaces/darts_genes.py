"""The DARTS choices: operations, cells, and each intermediate node's options.

Shared by the spec builder (:mod:`.darts`) and the batch encoding (:mod:`.darts_batch`).
"""

from __future__ import annotations

import itertools

OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
       "dil_conv_3x3", "dil_conv_5x5")
CELLS, STEPS = 20, 4


def _node_options(i: int) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """The ((op, input), (op, input)) choices of intermediate node i (inputs a < b)."""
    return [((op_a, a), (op_b, b)) for a, b in itertools.combinations(range(i + 2), 2)
            for op_a in OPS for op_b in OPS]


NODE_OPTIONS = [_node_options(i) for i in range(STEPS)]
