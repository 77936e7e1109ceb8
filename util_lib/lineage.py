"""Lineage of artifact versions: which run produced each, what that run used, back to raw data.

The embedded store records it already: each version's producing run (``run_id``), and on each
run the versions it used (tag ``util_lib.artifacts_used``) and wrote
(``util_lib.artifacts_written``) and, since they exist, the digests of its code and parameters
(:mod:`util_lib.digests`). :func:`trace_lineage` follows those records upstream;
:func:`format_lineage` prints the chain, :func:`draw_lineage` draws it (PNG, SVG, HTML, JSON),
and :func:`log_pipeline_lineage` does both for a pipeline run (MLflow artifacts ``lineage/``,
and a W&B run of the pipeline's group when W&B is not disabled).

    python -m util_lib.artifacts lineage model_export:v3 --out lineage.png
"""

from __future__ import annotations

import html
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from util_lib.environment import GROUP_ENV, PROJECT_ENV
from util_lib.store import ArtifactNotFoundError, ArtifactVersion, MlflowArtifactStore, parse_spec
from util_lib.tags import (
    CODE_DIGEST_TAG,
    CODE_DIR_TAG,
    CONFIG_DIGEST_TAG,
    PROJECT_TAG,
    STEP_TAG,
    USED_TAG,
    WRITTEN_TAG,
)

logger = logging.getLogger(__name__)

FORMATS = (".png", ".svg", ".html", ".json")
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
    util_lib.store.ArtifactNotFoundError
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


# ---------------------------------------------------------------------------------- picture
def _layers(lineage: Lineage) -> list[list[str]]:
    """Nodes in rows: each one row below its furthest predecessor (raw data at the top)."""
    nodes = [*lineage.versions, *lineage.runs]
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target, _ in lineage.edges:
        preds[target].append(source)
    depth: dict[str, int] = {}

    def visit(node: str, path: frozenset[str]) -> int:
        if node not in depth:
            # A cycle cannot be recorded by runs that use before they write; guard anyway.
            others = [visit(p, path | {node}) for p in preds[node] if p not in path]
            depth[node] = 1 + max(others, default=-1)
        return depth[node]

    for node in nodes:
        visit(node, frozenset())
    rows: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in nodes:
        rows[depth[node]].append(node)
    return rows


def _label(lineage: Lineage, node: str) -> str:
    if node in lineage.versions:
        v = lineage.versions[node]
        digest = f"sha256 {v.digest[:SHORT]}" if v.found else "not in the store"
        return f"{lineage.short(node)}\n{digest}"
    run = lineage.runs[node]
    if not run.found:
        return f"run {node[:8]}\nnot in the store"
    return (
        f"{run.name or run.step}  run {node[:8]}\n"
        f"code {run.code_digest[:8] or '-'}  config {run.config_digest[:8] or '-'}"
    )


_FILL = {"run": "#fdd0a2", "version": "#c6dbef", "raw data": "#c7e9c0"}


def lineage_figure(lineage: Lineage) -> Any:
    """The lineage as a matplotlib figure: versions (boxes) and runs (rounded), from the raw
    data at the top down, edges ``produced`` (run to version) and ``used`` (version to run).

    Top to bottom, so that a long chain stays readable when a viewer fits it to its width.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = _layers(lineage)
    width = max((len(r) for r in rows), default=1)
    figure = Figure(figsize=(max(6.0, 3.0 * width), max(2.5, 0.8 * len(rows) + 0.9)))
    ax = figure.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(-width / 2, width / 2)
    ax.set_ylim(-len(rows) + 0.5, 0.5)
    raw = set(lineage.raw())
    texts = {}
    for depth, row in enumerate(rows):
        for i, node in enumerate(row):
            x, y = i - (len(row) - 1) / 2, -depth
            if node in lineage.versions:
                found = lineage.versions[node].found
                color = _FILL["raw data"] if node in raw else _FILL["version"]
                box = dict(boxstyle="square,pad=0.4", facecolor=color if found else "#eeeeee")
            else:
                box = dict(boxstyle="round,pad=0.4", facecolor=_FILL["run"])
            texts[node] = ax.text(
                x, y, _label(lineage, node), ha="center", va="center", fontsize=8, bbox=box
            )
    colors = {"produced": "#d94801", "used": "#2171b5"}
    for source, target, kind in lineage.edges:
        ax.annotate(
            "",
            xy=texts[target].get_position(),
            xytext=texts[source].get_position(),
            arrowprops=dict(
                arrowstyle="-|>",
                color=colors[kind],
                patchA=texts[source].get_bbox_patch(),
                patchB=texts[target].get_bbox_patch(),
                shrinkA=2,
                shrinkB=2,
            ),
        )
    handles = [Patch(facecolor=c, edgecolor="black", label=k) for k, c in _FILL.items()]
    handles += [Line2D([], [], color=c, label=k) for k, c in colors.items()]
    ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=False)
    ax.set_title(lineage.heading, fontsize=9)
    figure.tight_layout()
    return figure


def draw_lineage(lineage: Lineage, path: str | Path) -> Path:
    """Write the lineage to ``path``: a picture (``.png``, ``.svg``), a page with the picture
    and the text (``.html``), or the graph as data (``.json``).

    Raises
    ------
    ValueError
        When the suffix is none of those.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"--out {path}: the suffix must be one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".json":
        path.write_text(json.dumps(lineage.to_dict(), indent=2), encoding="utf-8")
    elif suffix == ".png":
        lineage_figure(lineage).savefig(path, dpi=120)
    else:
        svg = _svg(lineage)
        if suffix == ".svg":
            path.write_text(svg, encoding="utf-8")
        else:
            path.write_text(_html(lineage, svg), encoding="utf-8")
    return path


def _svg(lineage: Lineage) -> str:
    import io

    import matplotlib

    buffer = io.StringIO()
    # Text as <text> elements, not glyph paths: the labels stay searchable and selectable.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        lineage_figure(lineage).savefig(buffer, format="svg")
    return buffer.getvalue()


def _html(lineage: Lineage, svg: str) -> str:
    title = html.escape(lineage.heading)
    body = svg[svg.index("<svg") :]  # drop the XML prologue: inline SVG
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
        f"<body>\n<h1>{title}</h1>\n{body}\n"
        f"<pre>{html.escape(format_lineage(lineage))}</pre>\n</body></html>\n"
    )


# ---------------------------------------------------------------------------------- pipeline
def _import_drawing() -> None:
    """Import what :func:`draw_lineage` needs (0.4 s of the driver's end otherwise)."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import matplotlib.lines  # noqa: F401
    import matplotlib.patches  # noqa: F401


class WandbLineageRun:
    """The W&B run of a pipeline's lineage, opened in a thread while the pipeline works.

    Importing wandb and opening an (offline) run take about 2 s: started with the pipeline,
    they overlap its steps (the driver only waits for them), instead of adding to its end.
    Does nothing when W&B is disabled or is the artifact store (its own lineage applies).
    """

    def __init__(self, pipeline_run_id: str, project: str) -> None:
        from util_lib.backends import choose_backends

        self.pipeline_run_id = pipeline_run_id
        self.run: Any = None
        self.error: BaseException | None = None
        backends = choose_backends()
        self.mode = backends.wandb_mode
        self._thread: threading.Thread | None = None
        if backends.artifact_store == "mlflow":
            # The picture's libraries load while the steps work, not after the last one.
            threading.Thread(target=_import_drawing, daemon=True).start()
        if backends.artifact_store == "mlflow" and self.mode != "disabled":
            # Read now, in the driver's thread: W&B keeps the first settings it sees.
            settings = {
                "project": os.environ.get(PROJECT_ENV) or project,
                "group": os.environ.get(GROUP_ENV) or None,
                "dir": os.environ.get("WANDB_DIR") or None,
            }
            self._thread = threading.Thread(target=self._open, args=(settings,), daemon=True)
            self._thread.start()

    def _open(self, settings: dict[str, Any]) -> None:
        try:
            import wandb

            self.run = wandb.init(
                job_type="lineage",
                name="pipeline lineage",
                mode=self.mode,
                config={"mlflow_run_id": self.pipeline_run_id},
                settings=wandb.Settings(silent=True, console="off"),
                **settings,
            )
        except BaseException as exc:  # noqa: BLE001 - reported when the picture is logged
            self.error = exc

    def wait(self) -> Any:
        """The open W&B run (None when there is none), once it is open."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.error is not None:
            raise self.error
        return self.run

    def finish(self, failed: bool = False) -> None:
        """End the W&B run (failed when the pipeline failed)."""
        try:
            run = self.wait()
        except BaseException:  # noqa: BLE001 - nothing to end
            return
        if run is not None:
            run.finish(exit_code=1 if failed else 0)
            self.run = None


def log_pipeline_lineage(
    pipeline_run_id: str,
    written_specs: Iterable[str],
    step_run_ids: Iterable[str] = (),
    wandb_run: WandbLineageRun | None = None,
) -> Path | None:
    """Log the lineage of a pipeline run as its MLflow artifacts ``lineage/`` (``lineage.png``,
    ``lineage.html``, ``lineage.json``, ``lineage.txt``), and to W&B unless it is disabled.

    The lineage covers ``step_run_ids`` (default: the pipeline run's child runs), what they
    used and wrote, and ``written_specs``, each back to the raw data. It never raises: a
    failure is logged as a warning (the pipeline's result does not depend on its picture).
    With W&B as the artifact store, W&B's own lineage graph applies and nothing is drawn.
    ``wandb_run``: the W&B run opened while the pipeline worked (:class:`WandbLineageRun`);
    without it, one is opened here.

    Returns
    -------
    Path or None
        The artifact path of the picture (``lineage/lineage.png``), None when none was logged.
    """
    try:
        from util_lib.backends import choose_backends

        backends = choose_backends()
        if backends.artifact_store != "mlflow":
            logger.info("lineage: see the W&B artifacts' Lineage tab (W&B is the store)")
            return None
        store = MlflowArtifactStore()
        run_ids = list(step_run_ids) or _child_runs(store, pipeline_run_id)
        lineage = trace_lineage(store, list(dict.fromkeys(written_specs)), run_ids)
        lineage.title = f"lineage of pipeline run {pipeline_run_id}"
        with tempfile.TemporaryDirectory(prefix="lineage-") as tmp:
            folder = Path(tmp) / "lineage"
            for suffix in (".png", ".html", ".json"):
                draw_lineage(lineage, folder / f"lineage{suffix}")
            (folder / "lineage.txt").write_text(format_lineage(lineage) + "\n", encoding="utf-8")
            store.client.log_artifacts(pipeline_run_id, str(folder), "lineage")
            if backends.wandb_mode != "disabled":
                wandb_run = wandb_run or WandbLineageRun(pipeline_run_id, store.project)
                _log_to_wandb(folder, wandb_run)
        logger.info(
            "lineage: %d versions, %d runs, raw data %s; artifacts lineage/ of run %s",
            len(lineage.versions),
            len(lineage.runs),
            ", ".join(map(lineage.short, lineage.raw())) or "not reached",
            pipeline_run_id,
        )
        return Path("lineage/lineage.png")
    except Exception as exc:  # noqa: BLE001 - a missing picture must not fail the pipeline
        logger.warning("could not draw the pipeline's lineage: %s: %s", type(exc).__name__, exc)
        return None


def _child_runs(store: MlflowArtifactStore, parent_run_id: str) -> list[str]:
    parent = store.client.get_run(parent_run_id)
    runs = store.client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return [r.info.run_id for r in runs]


def _log_to_wandb(folder: Path, wandb_run: WandbLineageRun) -> None:
    """Log the picture and the page to the pipeline's W&B lineage run, and end it."""
    import wandb

    run = wandb_run.wait()
    if run is None:
        return
    try:
        run.log(
            {
                "lineage": wandb.Image(str(folder / "lineage.png")),
                "lineage_page": wandb.Html((folder / "lineage.html").read_text(encoding="utf-8")),
            }
        )
        # A copy in the run's files (uploaded with them; wandb.save would link the temporary one).
        shutil.copy(folder / "lineage.json", Path(run.dir) / "lineage.json")
    finally:
        wandb_run.finish()
