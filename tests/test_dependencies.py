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


# --- every module the project imports is installed by requirements.txt ----------------------

# Folders that hold what runs leave behind, never the project's code (unless a Python package,
# as util_lib/artifacts/ is: a run leaves no __init__.py).
_NOT_CODE = {"outputs", "multirun", "mlruns", "mlartifacts", "wandb", "artifacts", "build"}


def _not_code(path: Path) -> bool:
    parts = path.relative_to(REPO).parts
    return any(
        p.startswith(".")
        or (p in _NOT_CODE and not REPO.joinpath(*parts[: i + 1], "__init__.py").is_file())
        for i, p in enumerate(parts)
    )


def _project_sources() -> list[tuple[str, str]]:
    """(where, source) of every Python file and notebook code cell of the project."""
    sources = []
    for path in sorted(REPO.rglob("*.py")):
        if not _not_code(path):
            sources.append((str(path.relative_to(REPO)), path.read_text()))
    for path in sorted(REPO.rglob("*.ipynb")):
        if _not_code(path):
            continue
        import json

        cells = json.loads(path.read_text())["cells"]
        for number, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                # IPython magics (%, !) are not Python.
                code = "".join(
                    line for line in cell["source"] if not line.lstrip().startswith(("%", "!"))
                )
                sources.append((f"{path.relative_to(REPO)} cell {number}", code))
    return sources


def _imported_top_levels() -> dict[str, str]:
    """Top-level module -> one place that imports it: static imports of every source, the
    modules pipeline.yaml has the fork server import, and those it imports for every step."""
    import ast

    from util_lib.pipeline.forkserver import COMMON_MODULES
    from util_lib.pipeline.graph import load_graph

    found: dict[str, str] = {}
    for where, source in _project_sources():
        for node in ast.walk(ast.parse(source, filename=where)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], where)
    for step in load_graph():
        for name in step.imports:
            found.setdefault(name.split(".")[0], f"pipeline.yaml ({step.name} imports)")
    for name in COMMON_MODULES:
        found.setdefault(name.split(".")[0], "util_lib/pipeline/forkserver.py COMMON_MODULES")
    return found


def _installed_by_requirements(lines: list[str] | None = None) -> set[str]:
    """Normalised names of the distributions requirements.txt (or ``lines`` of pins) installs,
    with their own requirements (markers evaluated here, extras followed), transitively."""
    import importlib.metadata as metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    if lines is None:
        lines = (REPO / "requirements.txt").read_text().splitlines()
    pending = [
        Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()
    ]
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        key = name + "[" + ",".join(sorted(requirement.extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        seen.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here: a marker excluded it
        for text in requires:
            nested = Requirement(text)
            extras = requirement.extras or {""}
            if nested.marker is None or any(
                nested.marker.evaluate({"extra": extra}) for extra in extras
            ):
                pending.append(nested)
    return {name for name in seen if "[" not in name}


def test_every_module_the_project_imports_is_installed_by_requirements() -> None:
    """A module installed here by chance (the machine's image, another project) is not one a
    user gets from `pip install -r requirements.txt`: each import must come from a distribution
    that requirements.txt installs, directly or as a dependency."""
    import importlib.metadata as metadata
    import sys

    from packaging.utils import canonicalize_name

    local = {p.stem for p in REPO.rglob("*.py")} | {p.name for p in REPO.iterdir() if p.is_dir()}
    providers = metadata.packages_distributions()
    installed = _installed_by_requirements()
    missing = []
    for module, where in sorted(_imported_top_levels().items()):
        if module in sys.stdlib_module_names or module in local or module == "__future__":
            continue
        distributions = {canonicalize_name(d) for d in providers.get(module, [])}
        if not distributions & installed:
            missing.append(f"{module} (imported by {where}; provided by {sorted(distributions)})")
    assert not missing, "not installed by requirements.txt: " + "; ".join(missing)


def _loaded_at_import(module: str) -> dict[str, str]:
    """The top-level names of the modules that importing the project's ``module`` loads: its
    imports at module level (not those inside functions, nor under ``if TYPE_CHECKING``),
    followed through the project's own modules; each with the file that imports it."""
    import ast

    found: dict[str, str] = {}
    pending, seen = [module], set()
    while pending:
        name = pending.pop()
        path = REPO / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = REPO / name.replace(".", "/") / "__init__.py"
        if name in seen or not path.exists():
            continue
        seen.add(name)
        where = str(path.relative_to(REPO))
        statements = list(ast.parse(path.read_text(encoding="utf-8")).body)
        while statements:
            node = statements.pop()
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                statements += (
                    node.body + getattr(node, "orelse", []) + getattr(node, "handlers", [])
                )
                continue
            if isinstance(node, ast.ExceptHandler):
                statements += node.body
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for imported in names:
                top = imported.split(".")[0]
                if (REPO / top).is_dir() or (REPO / f"{top}.py").exists():
                    pending.append(imported)
                else:
                    found.setdefault(top, where)
    return found


# What each step's MLproject command loads: its run.py, or (check_data) pytest's files.
STEP_ENTRIES = [(p.parent.name, f"{p.parent.name}.run") for p in REPO.glob("*/run.py")] + [
    ("check_data", "check_data.conftest"),
    ("check_data", "check_data.test_data"),
]


@pytest.mark.parametrize(("step", "entry"), sorted(STEP_ENTRIES), ids=lambda v: v)
def test_what_a_step_loads_is_installed_by_its_conda_yml(step: str, entry: str) -> None:
    """`mlflow run` with --env-manager uv (or conda) builds a step's environment from its own
    conda.yml: each module its run.py loads on import must come from a distribution that file
    installs, directly or as a dependency (get_data once imported pandera through the data
    contract's module, and its uv environment failed)."""
    import importlib.metadata as metadata
    import sys

    from packaging.utils import canonicalize_name

    conda = yaml.safe_load((REPO / step / "conda.yml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict) and "pip" in d)
    installed = _installed_by_requirements(pip)
    providers = metadata.packages_distributions()
    missing = [
        f"{module} (imported by {where})"
        for module, where in sorted(_loaded_at_import(entry).items())
        if module not in sys.stdlib_module_names
        and module != "__future__"
        and not {canonicalize_name(d) for d in providers.get(module, [])} & installed
    ]
    assert not missing, f"{step}/conda.yml does not install: " + "; ".join(missing)
