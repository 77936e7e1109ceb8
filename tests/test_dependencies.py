"""Pins are consistent: every conda.yml pins what requirements.txt pins, to the same version."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONDA_FILES = sorted(p.relative_to(REPO) for p in REPO.glob("*/conda.yml")) + [Path("conda.yml")]


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
        assert match, f"not pinned with ==: {line!r}"
        pins[match[1].lower().split("[")[0]] = match[2]
    return pins


REQUIREMENTS = _pins((REPO / "requirements.txt").read_text().splitlines())


@pytest.mark.parametrize("conda_file", CONDA_FILES, ids=str)
def test_conda_env_matches_requirements(conda_file: Path) -> None:
    env = yaml.safe_load((REPO / conda_file).read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps, f"{conda_file}: python is not pinned to 3.11"
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    pins = _pins(pip_section)
    for name, version in pins.items():
        assert name in REQUIREMENTS, f"{conda_file}: {name} is not in requirements.txt"
        assert REQUIREMENTS[name] == version, (
            f"{conda_file}: {name}=={version} but requirements.txt pins {REQUIREMENTS[name]}"
        )
    assert "mlflow" in pins, f"{conda_file}: every step needs mlflow"


def test_every_step_has_its_files() -> None:
    for step in (
        "get_data",
        "preprocess",
        "check_data",
        "segregate",
        "train_random_forest",
        "evaluate",
    ):
        for name in ("MLproject", "conda.yml", "README.md"):
            assert (REPO / step / name).exists(), f"{step}/{name} is missing"
