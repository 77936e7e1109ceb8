"""One reading of step arguments: optional values and paths under the project root."""

from __future__ import annotations

from pathlib import Path

import pytest

from util_lib.arguments import PROJECT_ROOT, is_url, null_or, optional, project_path

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value", ["", "  ", "null", "NULL", "none", "None", None])
def test_every_spelling_of_no_value_is_none(value: str | None) -> None:
    assert optional(value) is None


def test_a_value_is_kept_stripped() -> None:
    assert optional(" genre ") == "genre"
    assert optional("0") == "0"


def test_null_or_writes_what_optional_reads() -> None:
    assert null_or(None) == "null" and optional(null_or(None)) is None
    assert null_or(0.3) == "0.3" and optional(null_or("genre")) == "genre"


def test_relative_paths_are_under_the_project_root(tmp_path: Path) -> None:
    assert PROJECT_ROOT == REPO
    assert project_path("dataset/genres_mod.parquet") == str(REPO / "dataset/genres_mod.parquet")
    assert project_path("data/x.parquet", tmp_path) == str(tmp_path / "data" / "x.parquet")
    assert project_path(str(tmp_path / "x.parquet")) == str(tmp_path / "x.parquet")


@pytest.mark.parametrize(
    "url", ["https://h/x?raw=true", "http://127.0.0.1:8000/x", "file:///x.parquet"]
)
def test_urls_are_left_alone(url: str) -> None:
    assert is_url(url)
    assert project_path(url) == url
