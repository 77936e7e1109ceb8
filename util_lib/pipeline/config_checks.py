"""How the checks of the configuration read it and say what is wrong
(:mod:`util_lib.pipeline.config` runs them).

:class:`Checker` reads keys of a composed configuration (interpolations resolved, a missing or
unresolvable value recorded once) and collects :class:`Problem` s, each printed as
``key=value: what is allowed`` (redacted); :class:`ConfigError` lists them all. What the
checks read outside the configuration, the artifact store, is read once per configuration or
sweep (:class:`Lookups`): :func:`artifact_spec_problem` says why an artifact spec that a step
reads would not resolve when the step runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from util_lib.artifacts.interface import ArtifactNotFoundError, check_alias, is_alias, parse_spec
from util_lib.pipeline.graph import load_graph, step_names
from util_lib.redact import redact_text

if TYPE_CHECKING:
    from util_lib.artifacts.interface import ArtifactStore

STEPS = step_names()  # pipeline.yaml's


def parse_steps(execute_steps: Any) -> list[str] | None:
    """The step names of ``main.execute_steps`` (``all``, a list or a comma string); None if
    neither."""
    if isinstance(execute_steps, str) and execute_steps.strip() == "all":
        return list(STEPS)
    if isinstance(execute_steps, str):
        return [s.strip() for s in execute_steps.split(",") if s.strip()]
    if isinstance(execute_steps, list | tuple):
        return [str(s).strip() for s in execute_steps]
    return None


# ------------------------------------------------------------------------------------ problems
def show(value: Any) -> str:
    """A value as a user would write it in an override (``null``, ``true``, ``'text'``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


@dataclass(frozen=True)
class Problem:
    """One bad value: its key path, the value, and what is allowed."""

    key: str
    value: Any
    allowed: str

    def __str__(self) -> str:
        # A URL's credentials (data.file_url may hold a token) are never printed.
        return redact_text(f"{self.key}={show(self.value)}: {self.allowed}")


class ConfigError(ValueError):
    """The configuration has bad values; the message lists every one of them."""

    def __init__(self, heading: str, lines: list[str]) -> None:
        # Both in args: the error pickles (a sweep job's error travels back from its worker).
        super().__init__(heading, lines)
        self.heading = heading
        self.lines = lines

    def __str__(self) -> str:
        return "\n  ".join([self.heading, *self.lines])


ABSENT = object()


class Checker:
    """Reads keys of a configuration and collects the problems found."""

    def __init__(self, config: DictConfig) -> None:
        self.config = config
        self.problems: list[Problem] = []
        self._values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        """The plain value of ``key`` (interpolations resolved), or ``ABSENT`` after recording
        why it cannot be read (once: a key read again gives the same answer)."""
        if key not in self._values:
            self._values[key] = self._read(key)
        return self._values[key]

    def valid(self, key: str) -> Any:
        """The value of ``key`` when it is there and no problem is recorded for it (the checks
        that read files or stores build on those), else ``ABSENT``."""
        value = self.get(key)
        return ABSENT if any(p.key == key for p in self.problems) else value

    def _read(self, key: str) -> Any:
        try:
            value = OmegaConf.select(self.config, key, default=ABSENT, throw_on_missing=True)
            if isinstance(value, DictConfig | ListConfig):
                value = OmegaConf.to_container(value, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue:
            value = ABSENT
        except OmegaConfBaseException as error:  # an interpolation that does not resolve
            self.add(key, self.raw(key), str(error).splitlines()[0])
            return ABSENT
        if value is ABSENT:
            self.add(key, "???", "missing: config.yaml must give it a value")
        return value

    def raw(self, key: str) -> Any:
        """The value of ``key`` as written, interpolations unresolved."""
        parent, _, name = key.rpartition(".")
        node = OmegaConf.select(self.config, parent) if parent else self.config
        return OmegaConf.to_container(node, resolve=False).get(name)

    def add(self, key: str, value: Any, allowed: str) -> None:
        self.problems.append(Problem(key, value, allowed))


# ------------------------------------------------------------------------------------ the store
def pipeline_store(artifact_store: str, project: str) -> ArtifactStore:
    """The artifact store the pipeline will use, as main.py picks it (``main.artifact_store``,
    MLflow's tracking URI), in ``project``.

    Raises
    ------
    ArtifactNotFoundError
        When it is the embedded store on a SQLite file that does not exist yet: it holds no
        artifact (the file is not created here: a new store takes seconds to set up).
    """
    from util_lib.artifacts.backends import choose_backends, open_store

    kind = choose_backends(artifact_store).artifact_store
    if kind == "mlflow":
        import mlflow

        uri = mlflow.get_tracking_uri()
        if uri.startswith("sqlite:///"):
            database = Path(unquote(uri[len("sqlite:///") :].split("?")[0]))
            if not database.exists():
                raise ArtifactNotFoundError(f"no artifact yet: the store at {uri} does not exist")
    return open_store(kind, project=project)


def artifact_spec_problem(
    spec: str, project: str, awaited: Sequence[str], store: Callable[[], ArtifactStore]
) -> str | None:
    """What keeps the artifact ``spec`` that a step reads from resolving when the step runs.

    Parameters
    ----------
    spec : str
        ``[project/]name[:version_or_alias]`` (``data.reference_dataset``).
    project : str
        The pipeline's project (``main.project_name``).
    awaited : sequence of str
        The artifacts the same step reads that the pipeline writes before it: an alias of one
        of them (or ``latest``) that no version has yet is fine, since the step sets it
        (check_data gives the first sample that passes the alias ``reference``).
    store : callable
        Returns the store the pipeline will use (:func:`pipeline_store`); called only when the
        spec must be resolved.
    """
    try:
        spec_project, name, ref = parse_spec(spec)
        if is_alias(ref):
            check_alias(ref)
    except ValueError as error:
        return str(error)
    awaits = (spec_project or project) == project and name in awaited
    if awaits and (ref == "latest" or is_alias(ref)):
        return None
    allowed = (
        f"must name a version the store holds, or an alias of {' or '.join(awaited)} (which "
        "the pipeline sets)"
        if awaited
        else "must name a version the store holds"
    )
    try:
        store().resolve(spec)
    except ArtifactNotFoundError as error:
        return f"{error}: {allowed}"
    except Exception as error:  # noqa: BLE001 - a store that cannot be read fails the step too
        return f"cannot be resolved ({type(error).__name__}: {error}): {allowed}"
    return None


class Lookups:
    """What the checks of one configuration, or of every job of a sweep, read from outside
    once: the artifact store, and each spec's answer (the data file is cached by version)."""

    def __init__(self) -> None:
        self._stores: dict[tuple[str, str], Any] = {}
        self._answers: dict[tuple[str, str, str, tuple[str, ...]], str | None] = {}

    def spec_problem(
        self, spec: str, project: str, awaited: Sequence[str], artifact_store: str
    ) -> str | None:
        """:func:`artifact_spec_problem` against :func:`pipeline_store`, once per spec."""
        key = (artifact_store, project, spec, tuple(awaited))
        if key not in self._answers:
            self._answers[key] = artifact_spec_problem(
                spec, project, awaited, lambda: self._store(artifact_store, project)
            )
        return self._answers[key]

    def _store(self, artifact_store: str, project: str) -> ArtifactStore:
        if (artifact_store, project) not in self._stores:
            self._stores[artifact_store, project] = pipeline_store(artifact_store, project)
        return self._stores[artifact_store, project]


def check_artifact_specs(check: Checker, lookups: Lookups) -> None:
    """The artifact specs that config.yaml gives the steps that will run (pipeline.yaml's
    ``artifact:`` parameters) resolve."""
    steps = parse_steps(check.valid("main.execute_steps")) or []
    project = check.valid("main.project_name")
    artifact_store = check.valid("main.artifact_store")
    if ABSENT in (project, artifact_store):
        return
    for step in load_graph():
        if step.name not in steps:
            continue
        for param in step.parameters:
            if param.source != "artifact" or (spec := check.valid(param.key)) is ABSENT:
                continue
            awaited = step.input_names(check.config)
            if problem := lookups.spec_problem(spec, project, awaited, artifact_store):
                check.add(param.key, spec, problem)
