"""A model exported by an earlier release (commit 7e06eb2: all of util_lib bundled under
code/, MLflow's sklearn loader, no input domain) still loads and predicts the same, both as a
pyfunc where the repository is out of reach, as a pyfunc where today's util_lib is loaded
already, and through today's loader (evaluate's).

The fixture (55 kB) is that commit's export of a 3-tree forest fitted on 600 songs, with 20
other songs and the predictions and probabilities that commit computed for them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "model_export_7e06eb2.tar.gz"


@pytest.fixture
def old_model(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(tmp_path, filter="data")
    return tmp_path


def _expected(old_model: Path) -> dict:
    return json.loads((old_model / "expected.json").read_text())


@pytest.mark.integration
def test_it_predicts_the_same_as_a_pyfunc_outside_the_repository(old_model: Path) -> None:
    script = (
        "import importlib.util, json, mlflow.pyfunc, pandas as pd\n"
        "assert importlib.util.find_spec('util_lib') is None, 'the repository is on the path'\n"
        "model = mlflow.pyfunc.load_model('model')\n"
        "rows = pd.read_json('rows.json', orient='split')\n"
        "print(json.dumps([str(p) for p in model.predict(rows)]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=old_model,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    predictions = json.loads(done.stdout.strip().splitlines()[-1])
    assert predictions == _expected(old_model)["predictions"]


def test_todays_loader_reads_it_with_the_same_probabilities(old_model: Path) -> None:
    from util_lib.model.pyfunc import load_pipeline

    pipeline = load_pipeline(old_model / "model")
    rows = pd.read_json(old_model / "rows.json", orient="split")
    expected = _expected(old_model)
    assert [str(p) for p in pipeline.predict(rows)] == expected["predictions"]
    np.testing.assert_array_equal(pipeline.predict_proba(rows), np.array(expected["proba"]))


@pytest.mark.integration
def test_it_loads_as_a_pyfunc_where_todays_util_lib_is_loaded_already(old_model: Path) -> None:
    """As in serving or evaluate: today's util_lib is imported first, so the model's own
    code/util_lib is not; the modules its MLmodel and skops file name by their old paths
    (util_lib.pyfunc_model, util_lib.transformers) are today's util_lib.model ones."""
    script = (
        "import json, sys, mlflow.pyfunc, pandas as pd\n"
        "import util_lib.step.run\n"
        "model = mlflow.pyfunc.load_model('model')\n"
        "rows = pd.read_json('rows.json', orient='split')\n"
        "print(json.dumps({\n"
        "    'predictions': [str(p) for p in model.predict(rows)],\n"
        "    'util_lib': sys.modules['util_lib'].__file__,\n"
        "    'loader': sys.modules['util_lib.pyfunc_model'].__name__,\n"
        "    'transformers': sys.modules['util_lib.transformers'].__file__,\n"
        "}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=old_model,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["predictions"] == _expected(old_model)["predictions"]
    assert loaded["util_lib"] == str(REPO / "util_lib" / "__init__.py")
    assert loaded["loader"] == "util_lib.model.pyfunc"
    assert loaded["transformers"] == str(REPO / "util_lib" / "model" / "transformers.py")
