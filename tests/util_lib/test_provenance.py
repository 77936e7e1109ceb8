"""util_lib.step.provenance: what a step's process loaded, as the tags of its run, and the check of
such a record. The step cache's use of it: test_step_cache_record.py."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import sys
from pathlib import Path

import pytest

from util_lib.artifacts.digests import file_sha256, manifest_digest
from util_lib.names import (
    DISTRIBUTIONS_TAG,
    INSTALLED_TAG,
    LOADED_DIGEST_TAG,
    LOADED_FILES_TAG,
    PYTHON_TAG,
)
from util_lib.step.distributions import CACHE_DIR_ENV, InstalledNow
from util_lib.step.distributions import DistributionMap as _DistributionMap
from util_lib.step.provenance import (
    TAG_VALUE_LIMIT,
    interpreter,
    joined_parts,
    loaded_files,
    record,
    stale,
    tag_parts,
)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(folder))
    return folder


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root with a step folder, a package only the step imports, a module nobody
    imports and a virtual environment kept inside it; the root is on sys.path."""
    root = tmp_path / "proj"
    (root / "step").mkdir(parents=True)
    (root / "step" / "MLproject").write_text("name: step\n")
    (root / "step" / "run.py").write_text("print('step')\n")
    (root / "step" / "README.md").write_text("# not code\n")
    (root / "shared" / "sub").mkdir(parents=True)
    (root / "shared" / "__init__.py").write_text("")
    (root / "shared" / "sub" / "__init__.py").write_text("from . import leaf\n")
    (root / "shared" / "sub" / "leaf.py").write_text("X = 1\n")
    (root / "shared" / "unused.py").write_text("Y = 2\n")
    site = root / "venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    (site / "inside_venv.py").write_text("Z = 3\n")
    (site / "undeclared.py").write_text("V = 5\n")  # as Cython's shared modules are
    (site / "inside-1.0.dist-info").mkdir()
    (site / "inside-1.0.dist-info" / "METADATA").write_text("Name: inside\nVersion: 1.0\n")
    (site / "inside-1.0.dist-info" / "top_level.txt").write_text("inside_venv\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.syspath_prepend(str(site))
    for name in ("shared", "shared.sub", "shared.sub.leaf", "inside_venv", "undeclared"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return root


def test_the_files_are_the_project_modules_it_loaded_and_its_step_folder(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "on_pythonpath"
    elsewhere.mkdir()
    (elsewhere / "nobodys_module.py").write_text("W = 4\n")
    monkeypatch.syspath_prepend(str(elsewhere))
    monkeypatch.delitem(sys.modules, "nobodys_module", raising=False)
    importlib.invalidate_caches()
    for name in ("shared.sub", "inside_venv", "undeclared", "nobodys_module", "json", "numpy"):
        importlib.import_module(name)
    files = loaded_files(project, project / "step", importlib.metadata.packages_distributions())
    ours = {name for name in files if not name.startswith("/")}
    assert ours == {
        "step/MLproject",
        "step/run.py",
        "shared/__init__.py",
        "shared/sub/__init__.py",
        "shared/sub/leaf.py",
    }
    # A module of no distribution, outside the project, counts where it is; the standard
    # library's, a distribution's and whatever an install folder holds (one inside the project
    # too) do not (the distributions' versions count instead).
    outside = {name for name in files if name.startswith("/")}
    assert str((elsewhere / "nobodys_module.py").resolve()) in outside
    assert not [n for n in outside if "/json/" in n or "site-packages" in n]
    assert files["shared/sub/leaf.py"] == file_sha256(project / "shared" / "sub" / "leaf.py")


def _tags(root: Path, files: list[str], **more: str) -> dict[str, str]:
    digests = {name: file_sha256(root / name) for name in files}
    return {
        **tag_parts(LOADED_FILES_TAG, files),
        LOADED_DIGEST_TAG: manifest_digest(digests),
        PYTHON_TAG: interpreter(),
        DISTRIBUTIONS_TAG: "",
        **more,
    }


def test_a_list_longer_than_a_tag_value_goes_on_in_more_tags_that_mlflow_keeps(
    tracking: Path,
) -> None:
    """A project with many modules: the list of files needs three tags; the check reads them
    all back from a real store; a part that is lost fails the check."""
    from mlflow import MlflowClient

    root = tracking / "big"
    names = [f"package_with_a_long_name/module_number_{n:04d}.py" for n in range(400)]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"N = {name!r}\n")
    tags = _tags(root, names)
    assert {LOADED_FILES_TAG, f"{LOADED_FILES_TAG}.2", f"{LOADED_FILES_TAG}.3"} <= set(tags)
    assert max(len(v) for v in tags.values()) <= TAG_VALUE_LIMIT

    client = MlflowClient()
    run = client.create_run("0", tags=tags)
    stored = client.get_run(run.info.run_id).data.tags
    assert joined_parts(stored, LOADED_FILES_TAG) == names
    assert stale(stored, root, None) is None
    client.delete_tag(run.info.run_id, f"{LOADED_FILES_TAG}.2")
    stored = client.get_run(run.info.run_id).data.tags
    assert "changed or is gone" in stale(stored, root, None)


def test_the_check_names_what_no_longer_holds(tmp_path: Path) -> None:
    root = tmp_path
    (root / "a.py").write_text("A = 1\n")
    installed = InstalledNow()
    pytest_version = importlib.metadata.version("pytest")
    tags = _tags(
        root,
        ["a.py"],
        **{DISTRIBUTIONS_TAG: f"pytest=={pytest_version}", INSTALLED_TAG: "another"},
    )
    assert stale(tags, root, installed) is None  # asked one by one: the same version
    assert stale({**tags, DISTRIBUTIONS_TAG: "pytest==0.1"}, root, installed) == (
        f"it ran with pytest 0.1, pytest is {pytest_version} now"
    )
    gone = {**tags, DISTRIBUTIONS_TAG: "no-such-distribution==1.0"}
    assert stale(gone, root, installed).endswith("no-such-distribution is not installed now")
    # Nothing installed or removed since: the versions are not asked.
    same = {**tags, DISTRIBUTIONS_TAG: "pytest==0.1", INSTALLED_TAG: installed.fingerprint}
    assert stale(same, root, installed) is None
    assert "ran on cpython 3.9.0" in stale({**tags, PYTHON_TAG: "cpython 3.9.0"}, root, installed)
    assert "no record" in stale({}, root, installed)
    (root / "a.py").write_text("A = 2\n")
    assert "changed or is gone" in stale(tags, root, installed)
    assert stale(tags, None, None) is None  # a git step: its version pins its files


def test_the_distribution_map_is_kept_until_something_is_installed(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    first = _DistributionMap()
    assert first.cold
    first.save()
    assert not _DistributionMap().cold
    info = site / "fresh_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fresh-dist\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("fresh_mod\n")
    importlib.invalidate_caches()
    again = _DistributionMap()
    assert again.cold and again.fingerprint != first.fingerprint
    assert again.modules["fresh_mod"] == ["fresh-dist"]
    assert again.version("fresh-dist") == "1.0"
    again.save()
    saved = [json.loads(path.read_text()) for path in cache_dir.glob("distributions-*.json")]
    assert [s["versions"] for s in saved if s["fingerprint"] == again.fingerprint] == [
        {"fresh-dist": "1.0"}
    ]


def test_without_a_writable_cache_the_record_is_made_all_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    monkeypatch.setenv(CACHE_DIR_ENV, str(blocked / "cache"))
    tags = record(tmp_path, None)
    assert f"pytest=={importlib.metadata.version('pytest')}" in tags[DISTRIBUTIONS_TAG]
    assert tags[PYTHON_TAG] == interpreter()
