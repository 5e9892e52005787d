"""The ``border_layer`` column of a tabulated space: the first layer, in spec order, whose
receptive field exceeds the input (``rfsearch.analysis``), found block by block.

Entering a block with span ``W = B - A`` and jump ``J`` (per axis), a layer whose own span
relative to the block's input is ``s`` (its ``v - u``) sees ``W + s J + 1`` input units,
so it exceeds an input of ``res`` exactly when ``s > z = floor((res - 1 - W) / J)`` on
every axis (a counted layer of a bounded block, as :mod:`~.layerwise` counts them). The
block then passes on ``z' = floor((z - (B - A)) / S)`` (nested floor division, as the
counts' ``q``), so each slot's first exceeding layer follows from the small key
``(z, unbounded, size class)``, and a candidate's border is the first slot's that has
one. Rows name it as ``evaluate`` does: ``slot/layer``. Computed for output rows (a
name is text, which ``where`` does not compare).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..table import typed_array
from .layerwise import option_classes, passed_on, pick
from .tables import encode_blocks


def input_key(size, n: int) -> dict:
    """The key at the network input (``size``: (H, W)): z = res - 1, bounded, class 0."""
    res = np.asarray(size, np.int64).reshape(2, 1)
    return {"z": np.broadcast_to(res - 1, (2, n)), "unb": np.zeros(n, bool),
            "cls": np.zeros(n, np.int64)}


def stage_border(key: dict, table, idx: np.ndarray) -> tuple[np.ndarray, dict]:
    """(the first exceeding layer of each entry's block, or -1) [E] of one slot's blocks
    ``idx`` [E] entered with ``key``, and the key after the slot."""
    at = table.taker(key["cls"], idx)
    live = at(table.lay["cnt"]) & ~key["unb"]  # [L, E]
    exceeds = live & (key["z"][None] < at(table.lay["span"])).all(axis=1)
    layer = np.where(exceeds.any(axis=0), np.argmax(exceeds, axis=0), -1)
    grow, jump = at(table.B) - at(table.A), np.maximum(at(table.S), 1)  # [2, E]
    after = {"z": np.maximum((key["z"] - grow) // jump, -1),  # any z < 0: every layer exceeds
             **passed_on(key, table, at)}
    return layer, after


def positions(plan, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(slot, block column, layer) [N] of each id's border layer (slot -1: none): group
    by group, once per distinct (key, option) of the rows still without one. Rows carry
    the number of their key in a table of distinct keys, so finding the distinct entries
    is one small-integer pairing per group."""
    n = ids.size
    slot, column, layer = np.full(n, -1), np.zeros(n, np.int64), np.zeros(n, np.int64)
    rows, key_of, keys = np.arange(n), np.zeros(n, np.int64), input_key(plan.input_size, 1)
    first_slot = 0
    for group in plan.groups:
        option = (ids[rows] // group.below) % group.radix
        rep, inverse = option_classes([key_of * group.radix + option])
        found, after = _group_border(pick(keys, key_of[rep]), group, option[rep], first_slot)
        hit = found[0][inverse] >= 0
        for out, values in zip((slot, column, layer), found, strict=True):
            out[rows[hit]] = values[inverse[hit]]
        distinct, after_of = _distinct_keys(after)
        rows, key_of, keys = rows[~hit], after_of[inverse[~hit]], distinct
        first_slot += len(group.stages)
    return slot, column, layer


def _distinct_keys(key: dict) -> tuple[dict, np.ndarray]:
    """(the distinct keys of ``key`` [E], the number of each entry's key among them)."""
    rep, inverse = option_classes([key["z"][0] + 1, key["z"][1] + 1,
                                   key["unb"].astype(np.int64), key["cls"]])
    return pick(key, rep), inverse


def _group_border(key: dict, group, option: np.ndarray, first_slot: int) -> tuple:
    """((slot, column, layer) [E], slot -1: none, and the key after the group) of entries
    entering ``group`` with ``key`` on its ``option`` [E]; its slots are numbered from
    ``first_slot``."""
    e = option.size
    slot, column, layer = np.full(e, -1), np.zeros(e, np.int64), np.zeros(e, np.int64)
    for s, (table, slot_column) in enumerate(group.stages, first_slot):  # in slot order
        idx = slot_column[option]
        first, key = stage_border(key, table, idx)
        new = (slot < 0) & (first >= 0)
        slot[new], column[new], layer[new] = s, idx[new], first[new]
    return (slot, column, layer), key


def names(plan, slot: np.ndarray, column: np.ndarray, layer: np.ndarray,
          vocabularies: dict) -> pa.Array:
    """The border layers as ``evaluate`` names them (``slot/layer``; null where slot is
    -1), gathered in Arrow from each slot's vocabulary of layer names (``vocabularies``:
    slot -> :func:`column_names`, filled as slots are met; a run keeps one)."""
    space = plan.space
    has = slot >= 0
    text, at = [], np.zeros(slot.size, np.int64)
    for s in np.flatnonzero(np.bincount(slot[has])).tolist():
        if s not in vocabularies:
            vocabularies[s] = column_names(space.slots[s].blocks)
        vocab, codes = vocabularies[s]
        mine = slot == s
        at[mine] = len(text) + codes[column[mine], layer[mine]]
        text += [f"{space.slots[s].name}/{name}" for name in vocab]
    return pa.array(text, pa.string()).take(pa.array(at, mask=~has))


def column_names(blocks) -> tuple[list[str], np.ndarray]:
    """(vocabulary, codes [columns, layers]) of the layer names of each column of a slot's
    table (each distinct block), in node order: a space that ships its encoding ships
    them too (``blocks.layer_names``)."""
    shipped = getattr(blocks, "layer_names", None)
    return shipped if shipped is not None else encode_blocks(blocks)[0].layer_name_codes()


def border_layer(plan, ids: np.ndarray, known: np.ndarray, vocabularies: dict):
    """The ``border_layer`` column of ``ids`` [N]: null where ``known`` is false (no input
    size, an invalid candidate: as n_critical) or no layer exceeds the input."""
    slot, column, layer = positions(plan, ids)
    slot = np.where(known, slot, -1)
    return typed_array("border_layer", names(plan, slot, column, layer, vocabularies))
