"""The input domain of a served model: the values it accepts, per column (inclusive ranges from
the data contract, and the categories the model was trained on).

Written at export beside ``MLmodel`` (:data:`DOMAIN_FILENAME`, from
:func:`util_lib.step.data_schema.serving_domain`) and read when the model loads
(:mod:`util_lib.model.pyfunc`), which answers a request holding a value outside it with a 400
naming column, value and bound. The check is numpy on plain data, so serving needs no pandera.
Bundled with the model (``code/util_lib/model/``); it imports nothing of util_lib outside
``model/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Beside MLmodel in the model folder: {"ranges": {column: [low, high]},
# "categories": {column: [value, ...]}}.
DOMAIN_FILENAME = "input_domain.json"
_ROWS_NAMED = 3


class InputDomain:
    """The values a served model accepts: inclusive ranges and known categories per column.

    Parameters
    ----------
    ranges : mapping of str to (float, float)
        Column -> (lowest, highest) allowed value.
    categories : mapping of str to sequence, optional
        Column -> the values the model was trained on.
    """

    def __init__(
        self,
        ranges: Mapping[str, Sequence[float]],
        categories: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        self.ranges = {column: (low, high) for column, (low, high) in ranges.items()}
        self.categories = {c: list(values) for c, values in (categories or {}).items()}
        # Precomputed once, so that a request costs a few array operations on one block of its
        # values (pandas' access to a column costs ~10 us, more than comparing a whole batch).
        # Categories are numeric codes (key, time_signature).
        self._columns = pd.Index(
            list(self.ranges) + [c for c in self.categories if c not in ranges]
        )
        bounds = [self.ranges.get(c, (-np.inf, np.inf)) for c in self._columns]
        self._lows = np.array([float(low) for low, _ in bounds])
        self._highs = np.array([float(high) for _, high in bounds])
        self._known = {c: np.asarray(values, dtype=float) for c, values in self.categories.items()}
        self._layouts: dict[tuple, tuple] = {}  # per request columns: see _layout

    def _layout(self, columns: pd.Index) -> tuple:
        """Where the domain's columns are in a request with ``columns``, and their bounds.

        Cached: the requests to a server all have the same columns, and looking them up costs
        more than the whole check of a row.
        """
        key = tuple(columns)
        layout = self._layouts.get(key)
        if layout is None:
            positions = columns.get_indexer(self._columns)  # -1: column absent
            present = positions >= 0
            names = list(self._columns[present])
            coded = [(j, c) for j, c in enumerate(names) if c in self._known]
            layout = (positions[present], names, self._lows[present], self._highs[present], coded)
            if len(self._layouts) < 16:
                self._layouts[key] = layout
        return layout

    @classmethod
    def read(cls, model_dir: str | Path) -> InputDomain | None:
        """Read :data:`DOMAIN_FILENAME` from a model folder; ``None`` when it has none."""
        path = Path(model_dir) / DOMAIN_FILENAME
        if not path.is_file():
            return None
        try:
            spec = json.loads(path.read_text())
            return cls(spec["ranges"], spec.get("categories"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid input domain ({exc!r})") from exc

    def violations(self, data: pd.DataFrame) -> list[str]:
        """Describe each column of ``data`` with values outside the domain (missing values and
        columns the domain does not know are not checked).

        Returns
        -------
        list of str
            One sentence per column naming the value, its row and the bound; empty when valid.
        """
        problems: dict[str, str] = {}  # one sentence per column, the first problem found
        take, columns, lows, highs, coded = self._layout(data.columns)
        # One object (or float) array of the request, then floats: None and NaN become NaN,
        # text raises ValueError.
        values = data.to_numpy()[:, take].astype(float)
        # NaN compares False on both sides: missing values pass (they are imputed).
        outside = (values < lows) | (values > highs)
        if outside.any():
            for j in np.flatnonzero(outside.any(axis=0)):
                low, high = self.ranges[columns[j]]
                problems[columns[j]] = _describe(
                    data, columns[j], outside[:, j], f"outside [{low}, {high}]"
                )
        for j, column in coded:
            if column in problems:
                continue
            # A handful of codes: one broadcast comparison beats np.isin's sorting.
            known = (values[:, j, None] == self._known[column]).any(axis=1)
            unknown = ~known & ~np.isnan(values[:, j])
            if unknown.any():
                bound = f"not one the model was trained on {self.categories[column]}"
                problems[column] = _describe(data, column, unknown, bound)
        return list(problems.values())


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _describe(data: pd.DataFrame, column: str, mask: np.ndarray, bound: str) -> str:
    rows = np.flatnonzero(mask)
    first = _plain(data[column].iloc[rows[0]])
    more = (
        f"; {len(rows)} rows in all, e.g. rows {rows[:_ROWS_NAMED].tolist()}"
        if len(rows) > 1
        else ""
    )
    return f"column {column!r}: value {first!r} (row {rows[0]}{more}) is {bound}"
