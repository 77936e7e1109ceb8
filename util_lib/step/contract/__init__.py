"""A dataset's data contract: the config group ``dataset`` (a file of ``conf/dataset/``), read.

The contract is the one place that says what a dataset is: its file (``file_url``,
``sha256``), the ``target`` column and its ``labels``, and each column's dtype, whether it may
miss values, its range or categories and its role (numerical, categorical, text, or none);
the model joins the text columns, in order, into its text feature (``text_feature``).
Everything else is derived from it: the pandera schemas (:mod:`util_lib.step.data_schema`),
the model's feature lists (:meth:`Contract.features`), the drift tests' columns. Reading it
costs PyYAML only.

This module is the reader, which every step imports. Beside it, the command that writes a
contract from the data, ``python -m util_lib.step.contract infer FILE --target COLUMN --name
NAME`` (:mod:`~util_lib.step.contract.cli`, :mod:`~util_lib.step.contract.infer`): it writes
``conf/dataset/NAME.yaml`` for the user to read and edit, then ``dataset=NAME`` runs the
pipeline on that table. No step imports the command, so a step loads the reader only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from util_lib.names import PROJECT_ROOT

# The config group and where its files are (conf/dataset/NAME.yaml, chosen with dataset=NAME).
GROUP = "dataset"
GROUP_FOLDER = Path("conf") / GROUP
ROLES = ("numerical", "categorical", "text")
DTYPES = ("float64", "int64", "str", "bool")
_COLUMN_KEYS = {"dtype", "nullable", "min", "max", "categories", "role", "feature"}
_KEYS = {"file_url", "sha256", "target", "labels", "text_feature", "columns"}


class ContractError(ValueError):
    """A contract file that cannot be read as one; the message names the file and the key."""


@dataclass(frozen=True)
class Column:
    """One column of the contract (see the module's docstring)."""

    name: str
    dtype: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[Any, ...] | None = None
    role: str | None = None
    feature: bool = True


@dataclass(frozen=True)
class Contract:
    """A dataset's contract, as :func:`read_contract` reads it."""

    file_url: str | None
    sha256: str | None
    target: str
    labels: tuple[Any, ...] | None
    text_feature: str | None
    columns: tuple[Column, ...]
    # Where it was read from, for messages (not part of what it says).
    source: str = field(default="the contract", compare=False)

    def column(self, name: str) -> Column | None:
        """The column ``name``, or None."""
        return next((c for c in self.columns if c.name == name), None)

    def role(self, role: str, features_only: bool = True) -> list[str]:
        """The columns of ``role`` (numerical, categorical, text), in the contract's order;
        with ``features_only``, those the model reads (not ``feature: false``)."""
        return [
            c.name
            for c in self.columns
            if c.role == role and (c.feature or not features_only) and c.name != self.target
        ]

    @property
    def text_columns(self) -> list[str]:
        """The columns joined, in this order, into :attr:`text_feature`."""
        return self.role("text") if self.text_feature else []

    def features(self) -> dict[str, list[str]]:
        """The model's input columns by kind: ``numerical``, ``categorical`` and ``nlp`` (the
        text columns, which the model joins into its text feature, :attr:`text_feature`)."""
        return {
            "numerical": self.role("numerical"),
            "categorical": self.role("categorical"),
            "nlp": self.text_columns,
        }

    def drift_columns(self) -> tuple[list[str], list[str]]:
        """The columns compared with the reference: numerical ones (KS test) and categorical
        ones with the target (KL divergence: a change of class balance is a label shift)."""
        categorical = self.role("categorical", features_only=False)
        return self.role("numerical", features_only=False), [*categorical, self.target]


def read_contract(path: str | Path) -> Contract:
    """Read a contract file (a file of ``conf/dataset/`` or the section main.py writes).

    Parameters
    ----------
    path : str or pathlib.Path
        The YAML file; a relative path is under the project root.

    Returns
    -------
    Contract

    Raises
    ------
    ContractError
        Naming the file and the key that is missing or wrong.
    """
    file = Path(path) if Path(path).is_absolute() else PROJECT_ROOT / path
    try:
        document = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ContractError(f"cannot read the data contract {file}: {error}") from None
    return contract_from_mapping(document, str(file))


def contract_from_mapping(document: Any, source: str = "the contract") -> Contract:
    """Build a :class:`Contract` from a mapping as the contract file holds it.

    Raises
    ------
    ContractError
        Naming ``source`` and the key that is missing or wrong.
    """

    def fail(key: str, value: Any, allowed: str) -> ContractError:
        return ContractError(f"data contract {source}: {key}={value!r}: {allowed}")

    if not isinstance(document, Mapping):
        raise fail("(file)", document, "must be a mapping of " + ", ".join(sorted(_KEYS)))
    if unknown := sorted(set(document) - _KEYS):
        raise fail(
            unknown[0], document[unknown[0]], f"unknown key; keys: {', '.join(sorted(_KEYS))}"
        )
    columns_in = document.get("columns")
    if not isinstance(columns_in, Mapping) or not columns_in:
        raise fail("columns", columns_in, "must map each column's name to its description")
    columns = tuple(_column(str(name), spec, fail) for name, spec in columns_in.items())
    target = document.get("target")
    if target not in columns_in:
        raise fail("target", target, f"must be one of the columns: {', '.join(columns_in)}")
    labels = document.get("labels")
    if labels is not None and (not isinstance(labels, list) or not labels):
        raise fail("labels", labels, "must be null or a non-empty list of the target's classes")
    text_feature = document.get("text_feature")
    if text_feature is not None and (
        not isinstance(text_feature, str) or text_feature in columns_in
    ):
        raise fail("text_feature", text_feature, "must be null or the name of a new column")
    return Contract(
        file_url=document.get("file_url"),
        sha256=document.get("sha256"),
        target=str(target),
        labels=tuple(labels) if labels is not None else None,
        text_feature=text_feature,
        columns=columns,
        source=source,
    )


def _column(name: str, spec: Any, fail: Any) -> Column:
    key = f"columns.{name}"
    if not isinstance(spec, Mapping):
        raise fail(key, spec, "must be a mapping with dtype (and nullable, min, max, role...)")
    if unknown := sorted(set(spec) - _COLUMN_KEYS):
        raise fail(
            f"{key}.{unknown[0]}", spec[unknown[0]], f"unknown; keys: {sorted(_COLUMN_KEYS)}"
        )
    if spec.get("dtype") not in DTYPES:
        raise fail(f"{key}.dtype", spec.get("dtype"), f"must be one of {', '.join(DTYPES)}")
    if spec.get("role") not in (None, *ROLES):
        raise fail(f"{key}.role", spec.get("role"), f"must be null or one of {', '.join(ROLES)}")
    categories = spec.get("categories")
    if categories is not None and (not isinstance(categories, list) or not categories):
        raise fail(f"{key}.categories", categories, "must be null or a non-empty list")
    for bound in ("min", "max"):
        value = spec.get(bound)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise fail(f"{key}.{bound}", value, "must be null or a number")
    if (spec.get("min") is None) != (spec.get("max") is None):
        raise fail(key, dict(spec), "give both min and max, or neither")
    return Column(
        name=name,
        dtype=spec["dtype"],
        nullable=bool(spec.get("nullable", False)),
        min=spec.get("min"),
        max=spec.get("max"),
        categories=tuple(categories) if categories is not None else None,
        role=spec.get("role"),
        feature=bool(spec.get("feature", True)),
    )


def chosen_contract_file(config_file: str | Path = "config.yaml") -> Path:
    """The file of ``conf/dataset/`` that a config.yaml's ``defaults`` choose
    (``- dataset: NAME``); a relative ``config_file`` is under the project root.

    Raises
    ------
    ContractError
        When its defaults choose no dataset, naming the file.
    """
    file = Path(config_file) if Path(config_file).is_absolute() else PROJECT_ROOT / config_file
    for entry in yaml.safe_load(file.read_text()).get("defaults") or []:
        if isinstance(entry, dict) and entry.get(GROUP):
            return PROJECT_ROOT / GROUP_FOLDER / f"{entry[GROUP]}.yaml"
    raise ContractError(f"{file}: its defaults choose no {GROUP} (- {GROUP}: NAME)")


@cache
def default_contract() -> Contract:
    """The contract that the project's config.yaml chooses (``- dataset: NAME``): what a
    function given none uses (e.g. called from a notebook or a test)."""
    return read_contract(chosen_contract_file())
