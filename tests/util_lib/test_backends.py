"""Which artifact store and W&B mode a run uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from util_lib.artifacts.backends import choose_backends


@pytest.fixture
def no_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))


def test_auto_without_login_uses_mlflow_and_wandb_offline(no_login: None) -> None:
    backends = choose_backends("auto")
    assert (backends.artifact_store, backends.wandb_mode) == ("mlflow", "offline")
    assert "not logged in" in backends.reason


def test_auto_when_logged_in_uses_wandb(no_login: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert choose_backends("auto").artifact_store == "wandb"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert choose_backends("auto").artifact_store == "mlflow"


def test_disabled_and_explicit_choices(no_login: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert choose_backends("mlflow").wandb_mode == "disabled"
    with pytest.raises(ValueError, match="needs W&B online"):
        choose_backends("wandb")
    with pytest.raises(ValueError, match="not one of auto, wandb, mlflow"):
        choose_backends("s3")


def test_environment_variable_is_the_default(no_login: None, monkeypatch) -> None:
    monkeypatch.setenv("UTIL_LIB_ARTIFACT_STORE", "mlflow")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert choose_backends().artifact_store == "mlflow"
