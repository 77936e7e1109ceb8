"""The step cache reuses a run only while what it recorded as it ended still holds
(util_lib/step/provenance.py): one test per rule.

- the source files it loaded, whatever imported them (another step's package, a util_lib
  module or subpackage, ``importlib.import_module``, a relative import), keep their content;
  files it did not load may change;
- the distributions it loaded have the recorded versions (a real wheel, installed, upgraded,
  downgraded and removed by pip in a real virtual environment);
- it ran on the same Python;
- a run without a record (made before it existed) is never reused.

Real processes, a real SQLite MLflow store, real importlib.metadata. A step's process is a small
script run in a copy of the project's step folder, which imports the step's real modules and
opens and closes a real tracked run (``util_lib.step.run.start_run``), as a step does.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.names import CACHE_TAG, DISTRIBUTIONS_TAG, LOADED_FILES_TAG, PYTHON_TAG, STEP_TAG
from util_lib.pipeline.cache import StepCache, code_digest
from util_lib.pipeline.graph import get_step
from util_lib.step.distributions import CACHE_DIR_ENV
from util_lib.step.provenance import joined_parts
from util_lib.step.run import start_run

REPO = Path(__file__).resolve().parents[2]
PROJECT = OmegaConf.load(REPO / "config.yaml").main.project_name
EVALUATE = get_step("evaluate")
KEY = "same-key"  # the key's own rules are tested in test_step_cache.py

# A step's process: evaluate's real scoring module, the modules named on its command line, and
# a real tracked run, ended as a step ends its run. Run in the step's folder with the project
# root on PYTHONPATH, as MLproject does.
STEP_SCRIPT = """
import importlib, sys
import evaluate.scoring
from util_lib.step.run import start_run
for name in sys.argv[1:]:
    importlib.import_module(name)
with start_run("evaluate", "evaluate") as run:
    print(run.run_id)
"""


def _edit(path: Path) -> str:
    """Append a comment to ``path``; return its text before."""
    before = path.read_text()
    path.write_text(before + "\n# edited\n")
    return before


@pytest.fixture
def cache_dir(tracking: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The distributions map's cache of this test only (util_lib/step/provenance.py); the runs go
    to the pipeline's experiment, as the steps' do."""
    folder = tracking / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(folder))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", PROJECT)
    return folder


@pytest.fixture
def project(tracking: Path, cache_dir: Path) -> Path:
    """A copy of the project's code (util_lib, the steps' folders, pipeline.yaml, config.yaml),
    with a util_lib subpackage that only dynamic and relative imports reach."""
    root = tracking / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.md")
    for name in ("util_lib", "evaluate", "train_random_forest"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    for name in ("pipeline.yaml", "config.yaml"):
        shutil.copy(REPO / name, root / name)
    extra = root / "util_lib" / "extra"
    extra.mkdir()
    (extra / "__init__.py").write_text("")
    (extra / "helper.py").write_text("from . import deep\n\nVALUE = deep.VALUE\n")
    (extra / "deep.py").write_text("VALUE = 1\n")
    return root


def _run_step(root: Path, *imports: str) -> str:
    """Run the step's process in ``root``'s evaluate folder; return its run's id."""
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "MLFLOW_EXPERIMENT_NAME": PROJECT,
        "WANDB_PROJECT": PROJECT,
    }
    done = subprocess.run(
        [sys.executable, "-c", STEP_SCRIPT, *imports],
        cwd=root / "evaluate",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout.split()[-1]


def _pipeline_cache(experiment_id: str | None = None) -> StepCache:
    """The step cache of a new pipeline run (each pipeline asks what is installed afresh)."""
    from mlflow import MlflowClient

    from util_lib.step.trackers import get_or_create_experiment

    experiment = experiment_id or get_or_create_experiment(PROJECT)
    return StepCache(MlflowClient(), experiment, MlflowArtifactStore(), None)


def _reused(root: Path, env_manager: str = "local") -> bool:
    """Whether a new pipeline would reuse the evaluate run remembered under :data:`KEY`."""
    hit = _pipeline_cache().lookup(EVALUATE, KEY, env_manager, (str(root / "evaluate"), None))
    return hit is not None


def _recorded(run_id: str, tag: str) -> list[str]:
    from mlflow import MlflowClient

    return joined_parts(MlflowClient().get_run(run_id).data.tags, tag) or []


def test_an_edit_of_another_steps_module_the_step_imports_reruns_it(project: Path) -> None:
    """A step that imports train_random_forest.pipeline: an edit there (where the old key, which
    followed util_lib imports only, did not look) reruns it."""
    run_id = _run_step(project, "train_random_forest.pipeline")
    _pipeline_cache().remember(run_id, KEY)
    assert "train_random_forest/pipeline.py" in _recorded(run_id, LOADED_FILES_TAG)
    assert _reused(project)

    key_before = code_digest(project / "evaluate")
    module = project / "train_random_forest" / "pipeline.py"
    text = _edit(module)
    assert code_digest(project / "evaluate") == key_before  # the key cannot see it
    assert not _reused(project)
    module.write_text(text)  # the same content again: the run is good again
    assert _reused(project)
    # Its own module too, of course.
    _edit(project / "evaluate" / "scoring.py")
    assert not _reused(project)


def test_an_edit_of_a_util_lib_module_it_imports_reruns_it_one_it_does_not_import_does_not(
    project: Path,
) -> None:
    """Whatever the import form: util_lib.step.run (a plain import, at some depth), a
    subpackage's module loaded with importlib.import_module, and the module that one imports
    relatively."""
    run_id = _run_step(project, "util_lib.extra.helper")
    _pipeline_cache().remember(run_id, KEY)
    recorded = _recorded(run_id, LOADED_FILES_TAG)
    assert {"util_lib/step/run.py", "util_lib/extra/deep.py"} <= set(recorded)
    assert "util_lib/pipeline/sweep_report.py" not in recorded  # nothing it ran imports it
    assert _reused(project)

    for name in ("step/run.py", "artifacts/mlflow_store.py", "extra/helper.py", "extra/deep.py"):
        module = project / "util_lib" / name
        text = _edit(module)
        assert not _reused(project), name
        module.write_text(text)
    assert _reused(project)
    _edit(project / "util_lib" / "pipeline" / "sweep_report.py")
    (project / "util_lib" / "extra" / "unused.py").write_text("X = 1\n")
    assert _reused(project)
    # A file it loaded that is gone.
    (project / "util_lib" / "extra" / "deep.py").unlink()
    assert not _reused(project)


# ------------------------------------------------------------------ distributions
def _wheel(folder: Path, version: str, name: str = "tinydist") -> Path:
    """A wheel of distribution ``name`` (module ``<name>_mod``) at ``version``, built as the
    wheel format says (a zip with the module, METADATA, WHEEL and a RECORD of hashes)."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}_mod/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    lines = []
    for file, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        lines.append(f"{file},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*lines, f"{info}/RECORD,,"]) + "\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for file, text in files.items():
            archive.writestr(file, text)
    return path


@pytest.fixture
def environment(tmp_path: Path) -> tuple[Path, Path]:
    """A real virtual environment (its interpreter, its site-packages) that pip installs into."""
    folder = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return python, folder / "lib" / version / "site-packages"


def _pip(python: Path, command: str, *args: str) -> None:
    """The project's pip, acting on the environment of ``python`` (pip's --python), offline."""
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    offline = ["--no-index", "--no-deps"] if command == "install" else []
    done = subprocess.run(
        [*pip, command, *args, *offline, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def test_an_upgraded_downgraded_or_removed_distribution_reruns_the_step(
    tracking: Path, cache_dir: Path, environment: tuple[Path, Path], monkeypatch
) -> None:
    """The step (this process: its interpreter is the driver's, as with --env-manager local)
    imports a module of a distribution that pip then upgrades in the same environment."""
    python, site = environment
    old, new = _wheel(tracking, "1.0"), _wheel(tracking, "2.0")
    _pip(python, "install", str(old))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "tinydist_mod", raising=False)
    importlib.import_module("tinydist_mod")
    with start_run("evaluate", "evaluate") as run:
        pass
    assert "tinydist==1.0" in _recorded(run.run_id, DISTRIBUTIONS_TAG)
    _pipeline_cache().remember(run.run_id, KEY)
    assert _reused(REPO)

    _pip(python, "install", "--upgrade", str(new))
    assert (site / "tinydist-2.0.dist-info").is_dir()
    assert not (site / "tinydist-1.0.dist-info").exists()
    assert not _reused(REPO)
    # Another manager's step runs in its own environment, pinned by conda.yml (in the key).
    assert _reused(REPO, env_manager="uv")
    _pip(python, "install", str(old))  # downgraded: what the run ran on again
    assert _reused(REPO)
    # Another distribution installed beside it: the run still holds.
    _pip(python, "install", str(_wheel(tracking, "9.9", name="otherdist")))
    assert _reused(REPO)
    _pip(python, "uninstall", "--yes", "tinydist")
    assert not _reused(REPO)


def test_a_run_on_another_python_is_not_reused(tracking: Path, cache_dir: Path) -> None:
    from mlflow import MlflowClient

    with start_run("evaluate", "evaluate") as run:
        pass
    client = MlflowClient()
    recorded = client.get_run(run.run_id).data.tags[PYTHON_TAG]
    assert recorded == f"{sys.implementation.name} {sys.version.split()[0]}"
    _pipeline_cache().remember(run.run_id, KEY)
    assert _reused(REPO)
    for other in ("cpython 3.11.6", "cpython 3.12.7", f"pypy {sys.version.split()[0]}"):
        client.set_tag(run.run_id, PYTHON_TAG, other)  # as a run made on that interpreter
        assert not _reused(REPO), other
    # A uv step's Python is its environment's, which its conda.yml pins (in the key).
    assert _reused(REPO, env_manager="uv")


def test_a_run_without_a_record_is_never_reused(tracking: Path, cache_dir: Path) -> None:
    """A run made before runs recorded what they ran on (or one whose record failed)."""
    from mlflow import MlflowClient

    cache = _pipeline_cache()
    client = MlflowClient()
    old = client.create_run(cache.experiment_id, tags={STEP_TAG: "evaluate", CACHE_TAG: KEY})
    client.set_terminated(old.info.run_id, "FINISHED")
    assert not _reused(REPO)
    assert not _reused(REPO, env_manager="uv")
