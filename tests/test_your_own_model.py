"""docs/your_own_model.md, followed as written in a copy of the project: a family chosen with
``model=``, an argument overridden, the model served (``python -m serving serve``), a model file
of one's own written to ``conf/model/`` and a sweep across families, each command printing
what the guide shows (tests/test_readme_commands.py's conventions and runner).

One pipeline run, one short one (the data steps cached), one server and a two-job sweep."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_readme_commands import REPO, copy_project, readme_commands, run_commands

pytestmark = pytest.mark.e2e

GUIDE = REPO / "docs" / "your_own_model.md"


def test_the_guide_runs_as_written(tmp_path: Path) -> None:
    commands = readme_commands(GUIDE.read_text(encoding="utf-8"), sections=None)
    texts = [c.text for c in commands]
    assert any("model=hist_gradient_boosting" in t for t in texts)
    assert any(t.startswith("python -m serving serve") for t in texts)
    assert any("model=logistic_regression,extra_trees -m" in t for t in texts)
    assert [c.write_to for c in commands if c.write_to] == ["conf/model/extra_trees.yaml"]
    run_commands(commands, copy_project(tmp_path))
