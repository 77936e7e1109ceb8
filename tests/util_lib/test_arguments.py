"""One reading of step arguments: optional values and paths under the project root."""

from __future__ import annotations

from pathlib import Path

import pytest

from util_lib import redact
from util_lib.names import PROJECT_ROOT
from util_lib.step.arguments import (
    hide_secrets,
    is_url,
    null_or,
    optional,
    project_path,
    reveal,
    secret_env,
)

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


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """No registered secret, as in a new process."""
    monkeypatch.setattr(redact, "_secret_texts", set())
    monkeypatch.setattr(redact, "_secret_places", set())
    monkeypatch.setattr(redact, "_registered_env", set())
    monkeypatch.setattr(redact, "_pattern", None)


def test_a_url_from_the_environment_is_secret_whatever_its_query_names(
    fresh_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data.file_url='${oc.env:SONGS_URL}'``: ``?code=`` hides nothing by its name."""
    url = "https://data.example/songs.parquet?code=c0deK5&v=2"
    assert hide_secrets({"file_url": url}) == ({"file_url": url}, {})  # typed in: not secret
    monkeypatch.setenv("SONGS_URL", url)
    shown, hidden = hide_secrets({"file_url": url, "sha256": "null"})
    assert shown == {
        "file_url": "https://data.example/songs.parquet?code=***&v=***",
        "sha256": "null",
    }
    assert hidden == {secret_env("file_url"): url}
    # The driver's own log lines mask it from now on.
    assert redact.redact_text("fetching c0deK5") == "fetching ***"


def test_the_step_takes_the_secret_back_and_masks_it(
    fresh_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "https://data.example/songs.parquet?code=c0deK5"
    monkeypatch.setenv(secret_env("file_url"), url)
    assert reveal("file_url", "https://data.example/songs.parquet?code=***") == url
    assert redact.redact_text(f"GET {url} failed") == (
        "GET https://data.example/songs.parquet?code=*** failed"
    )
    assert reveal("file_url", "/by/hand.parquet") == "/by/hand.parquet"
