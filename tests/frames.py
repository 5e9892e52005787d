"""Reading rfsearch result DataFrames as plain rows, for comparison with the oracles."""

from __future__ import annotations

import pandas as pd


def plain(value):
    """A DataFrame cell as a plain Python value: None for null, int / bool / str otherwise."""
    if value is None or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


def frame_rows(frame: pd.DataFrame) -> list[dict]:
    """Every row of a result table as a dict of plain Python values."""
    return [{key: plain(value) for key, value in row.items()} for row in frame.to_dict("records")]
