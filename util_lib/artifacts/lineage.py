"""Lineage of artifact versions: which run produced each, what that run used, back to raw data.

The embedded store records it already: each version's producing run (``run_id``), and on each
run the versions it used (tag ``util_lib.artifacts_used``) and wrote
(``util_lib.artifacts_written``) and, since they exist, the digests of its code and parameters
(:mod:`util_lib.artifacts.digests`). :func:`trace_lineage` follows those records upstream;
:func:`format_lineage` prints the chain; :mod:`util_lib.artifacts.lineage_picture` draws it
(SVG, HTML, JSON) and logs a pipeline run's (MLflow artifacts ``lineage/``, and a W&B run
of the pipeline's group when W&B is not disabled).

    python -m util_lib.artifacts lineage model_export:v3 --out lineage.svg
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from util_lib.artifacts.interface import ArtifactNotFoundError, ArtifactVersion, parse_spec
from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.names import (
    CODE_DIGEST_TAG,
    CODE_DIR_TAG,
    CONFIG_DIGEST_TAG,
    PROJECT_TAG,
    STEP_TAG,
    USED_TAG,
    WRITTEN_TAG,
)

logger = logging.getLogger(__name__)

SHORT = 12  # digest characters shown, as `artifacts list` does


@dataclass
class VersionNode:
    """An artifact version of the lineage (``found`` False: a use recorded, not in the store)."""

    spec: str  # project/name:vN
    digest: str = ""
    type: str = ""
    producer: str = ""  # run id
    aliases: list[str] = field(default_factory=list)
    found: bool = True


@dataclass
class RunNode:
    """A run of the lineage: its step, status, digests, and what it used and wrote."""

    run_id: str
    name: str = ""
    step: str = ""
    status: str = ""
    code_digest: str = ""
    config_digest: str = ""
    code_dir: str = ""
    used: list[str] = field(default_factory=list)  # project/name:vN
    written: list[str] = field(default_factory=list)
    found: bool = True


@dataclass
class Lineage:
    """A lineage graph: versions and runs, edges ``(source, target, "produced" | "used")``.

    A version's node id is its ``project/name:vN``, a run's its run id; ``produced`` goes from
    a run to a version, ``used`` from a version to a run.
    """

    project: str
    roots: list[str] = field(default_factory=list)
    versions: dict[str, VersionNode] = field(default_factory=dict)
    runs: dict[str, RunNode] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    title: str = ""  # default: "lineage of <roots>"

    @property
    def heading(self) -> str:
        """The title, else ``lineage of <each root>``."""
        return self.title or f"lineage of {', '.join(map(self.root_label, self.roots))}"

    def raw(self) -> list[str]:
        """The versions whose producer used nothing: the raw data the lineage starts from."""
        raw = []
        for spec, version in self.versions.items():
            producer = self.runs.get(version.producer)
            if version.found and producer is not None and producer.found and not producer.used:
                raw.append(spec)
        return raw

    def root_label(self, root: str) -> str:
        """A root as shown: its version's spec, or ``run <name> (<id>)``."""
        if root in self.versions:
            return self.short(root)
        run = self.runs[root]
        return f"run {run.name or run.step} ({root[:8]})"

    def short(self, spec: str) -> str:
        """``name:vN`` for a version of the lineage's project, ``project/name:vN`` otherwise."""
        project, _, rest = spec.partition("/")
        return rest if project == self.project else spec

    def to_dict(self) -> dict[str, Any]:
        """The graph as plain data (``lineage.json``)."""
        return {
            "project": self.project,
            "title": self.heading,
            "roots": self.roots,
            "raw": self.raw(),
            "versions": [asdict(v) for v in self.versions.values()],
            "runs": [asdict(r) for r in self.runs.values()],
            "edges": [{"source": s, "target": t, "kind": k} for s, t, k in self.edges],
        }


class _Tracer:
    """Walks the store's records upstream, reading each run and each artifact once."""

    def __init__(self, store: MlflowArtifactStore) -> None:
        self.store = store
        self.lineage = Lineage(project=store.project)
        self._versions: dict[tuple[str, str], list[ArtifactVersion]] = {}

    def version(self, spec: str) -> VersionNode:
        """Add the version ``spec`` (``[project/]name:vN``, or an alias) and its upstream."""
        project, name, ref = parse_spec(spec)
        project = project or self.store.project
        if (project, name) not in self._versions:
            self._versions[project, name] = self.store.versions(name, project=project)
        match = [
            v for v in self._versions[project, name] if ref == f"v{v.version}" or ref in v.aliases
        ]
        if not match:
            node_id = f"{project}/{name}:{ref}"
            return self.lineage.versions.setdefault(node_id, VersionNode(node_id, found=False))
        found = match[0]
        node_id = found.qualified_spec
        if node_id in self.lineage.versions:
            return self.lineage.versions[node_id]
        node = VersionNode(
            node_id, found.digest, found.type, found.producer_run_id, list(found.aliases)
        )
        self.lineage.versions[node_id] = node
        if found.producer_run_id:
            self.run(found.producer_run_id)
            self._edge(found.producer_run_id, node_id, "produced")
        return node

    def run(self, run_id: str, with_written: bool = False) -> RunNode:
        """Add run ``run_id`` and, upstream, what it used (and what it wrote, when asked)."""
        node = self.lineage.runs.get(run_id)
        if node is None:
            node = self.lineage.runs[run_id] = self._read_run(run_id)
            for spec in node.used:
                used = self.version(spec)
                self._edge(used.spec, run_id, "used")
        if with_written:
            for spec in node.written:
                self._edge(run_id, self.version(spec).spec, "produced")
        return node

    def _read_run(self, run_id: str) -> RunNode:
        from mlflow.exceptions import MlflowException

        try:
            run = self.store.client.get_run(run_id)
        except MlflowException:  # deleted, or in another tracking store
            return RunNode(run_id, found=False)
        tags = run.data.tags
        project = tags.get(PROJECT_TAG) or self.store.project

        def qualified(tag: str) -> list[str]:
            specs = [s.strip() for s in tags.get(tag, "").split(",") if s.strip()]
            return list(dict.fromkeys(s if "/" in s else f"{project}/{s}" for s in specs))

        return RunNode(
            run_id,
            name=run.info.run_name or "",
            step=tags.get(STEP_TAG, ""),
            status=run.info.status,
            code_digest=tags.get(CODE_DIGEST_TAG, ""),
            config_digest=tags.get(CONFIG_DIGEST_TAG, ""),
            code_dir=tags.get(CODE_DIR_TAG, ""),
            used=qualified(USED_TAG),
            written=qualified(WRITTEN_TAG),
        )

    def _edge(self, source: str, target: str, kind: str) -> None:
        if (source, target, kind) not in self.lineage.edges:
            self.lineage.edges.append((source, target, kind))


def trace_lineage(
    store: MlflowArtifactStore, specs: Iterable[str] = (), run_ids: Iterable[str] = ()
) -> Lineage:
    """The lineage of some versions and runs, back to the raw data.

    Parameters
    ----------
    store : MlflowArtifactStore
        The embedded store (its project is the default of specs without one).
    specs : iterable of str
        Versions, ``[project/]name:ref``; each is traced upstream: its producing run, the
        versions that run used, their producers, ... until a producer that used nothing.
    run_ids : iterable of str
        Runs (e.g. a pipeline's steps): each with what it used, traced upstream, and what it
        wrote.

    Raises
    ------
    util_lib.artifacts.interface.ArtifactNotFoundError
        When a version of ``specs`` is not in the store, naming what is.
    """
    tracer = _Tracer(store)
    for spec in specs:
        node = tracer.version(spec)
        if not node.found:
            store.resolve(spec)  # raises, naming the artifacts, versions and aliases that exist
            raise ArtifactNotFoundError(f"artifact version {spec!r} not found")
        tracer.lineage.roots.append(node.spec)
    for run_id in run_ids:
        tracer.run(run_id, with_written=True)
        tracer.lineage.roots.append(run_id)
    return tracer.lineage


# ---------------------------------------------------------------------------------- text
def _digest(value: str) -> str:
    return value[:SHORT] if value else "not recorded"


def _run_line(run: RunNode) -> str:
    if not run.found:
        return f"run {run.run_id} (not in this tracking store)"
    return f"{run.name or run.step} (run {run.run_id}, {run.status})"


def format_lineage(lineage: Lineage) -> str:
    """The lineage as text: each version with its digest, producing run, that run's code and
    config digests and inputs, from the roots back to the raw data; then runs that wrote none
    of them (a check, an evaluation)."""
    lines = [lineage.heading]
    for spec, v in lineage.versions.items():
        lines.append("")
        if not v.found:
            lines.append(f"{lineage.short(spec)}  (recorded as used, not in the store)")
            continue
        aliases = f"  [{', '.join(v.aliases)}]" if v.aliases else ""
        lines.append(f"{lineage.short(spec)}  sha256 {_digest(v.digest)}  {v.type}{aliases}")
        lines.extend(_producer_lines(lineage, lineage.runs.get(v.producer)))
    producers = {v.producer for v in lineage.versions.values()}
    others = [r for r in lineage.runs.values() if r.run_id not in producers]
    for run in others:
        lines += ["", f"run {_run_line(run)}"]
        lines.extend(_producer_lines(lineage, run, label=None))
    raw = lineage.raw()
    lines += ["", f"raw data: {', '.join(lineage.short(s) for s in raw) or 'not reached'}"]
    return "\n".join(lines)


def _producer_lines(
    lineage: Lineage, run: RunNode | None, label: str | None = "produced by"
) -> list[str]:
    if run is None:
        return ["  produced by: not recorded"]
    lines = [f"  {label:<12} {_run_line(run)}"] if label else []
    if run.found:
        where = f" ({run.code_dir} + util_lib)" if run.code_dir else " (util_lib)"
        code = _digest(run.code_digest) + (where if run.code_digest else "")
        lines.append(f"  {'code':<12} {code}   config {_digest(run.config_digest)}")
        used = ", ".join(lineage.short(s) for s in run.used) or "nothing (raw data)"
        lines.append(f"  {'which used':<12} {used}")
        if label is None:
            lines.append(f"  {'wrote':<12} {', '.join(map(lineage.short, run.written)) or '-'}")
    return lines
