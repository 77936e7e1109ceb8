"""The lineage of artifact versions as a picture (:mod:`util_lib.artifacts.lineage` traces it).

:func:`draw_lineage` writes a :class:`~util_lib.artifacts.lineage.Lineage` as SVG, HTML or JSON
(:data:`FORMATS`): networkx holds the graph and orders it (topological generations, raw data
at the top); the SVG is written directly, so a pipeline's picture costs milliseconds and no
plotting library. :func:`log_pipeline_lineage` draws a pipeline run's and logs it to MLflow
(artifacts ``lineage/``; the UI shows the SVG) and to a W&B run of the pipeline's group when
W&B is not disabled (:class:`WandbLineageRun`, opened while the steps work).

    python -m util_lib.artifacts lineage model_export:v3 --out lineage.svg
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
from pathlib import Path
from typing import Any

from util_lib.artifacts.lineage import SHORT, Lineage, format_lineage, trace_lineage
from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.names import GROUP_ENV, PROJECT_ENV

logger = logging.getLogger(__name__)

FORMATS = (".svg", ".html", ".json")


# ---------------------------------------------------------------------------------- picture
_FILL = {"run": "#fdd0a2", "version": "#c6dbef", "raw data": "#c7e9c0", "not in the store": "#eee"}
_EDGE = {"produced": "#d94801", "used": "#2171b5"}
_BOX_W, _BOX_H, _GAP_X, _GAP_Y, _MARGIN = 230, 40, 30, 40, 20


def lineage_graph(lineage: Lineage) -> Any:
    """The lineage as a networkx DiGraph: nodes are versions and runs (``kind``, ``label``,
    ``fill``), edges carry their ``kind`` (``produced``, ``used``)."""
    import networkx as nx

    graph = nx.DiGraph()
    raw = set(lineage.raw())
    for spec, v in lineage.versions.items():
        fill = "raw data" if spec in raw else "version"
        digest = f"sha256 {v.digest[:SHORT]}" if v.found else "not in the store"
        fill = fill if v.found else "not in the store"
        graph.add_node(spec, kind="version", fill=fill, label=(lineage.short(spec), digest))
    for run_id, run in lineage.runs.items():
        label = (f"run {run_id[:8]}", "not in the store")
        if run.found:
            label = (
                f"{run.name or run.step}  run {run_id[:8]}",
                f"code {run.code_digest[:8] or '-'}  config {run.config_digest[:8] or '-'}",
            )
        graph.add_node(run_id, kind="run", fill="run", label=label)
    for source, target, kind in lineage.edges:
        graph.add_edge(source, target, kind=kind)
    return graph


def lineage_svg(lineage: Lineage) -> str:
    """The lineage as an SVG picture: from the raw data at the top down (networkx's topological
    generations are the rows), versions square, runs rounded, edges ``produced`` (run to
    version) and ``used`` (version to run). Text stays text: searchable and selectable."""
    import networkx as nx

    graph = lineage_graph(lineage)
    rows = [sorted(row) for row in nx.topological_generations(graph)] if graph else []
    width = max((len(row) for row in rows), default=1) * (_BOX_W + _GAP_X) + 2 * _MARGIN
    height = len(rows) * (_BOX_H + _GAP_Y) + 2 * _MARGIN + 30
    at: dict[str, tuple[float, float]] = {}
    for depth, row in enumerate(rows):
        left = (width - len(row) * (_BOX_W + _GAP_X) + _GAP_X) / 2
        for i, node in enumerate(row):
            at[node] = (left + i * (_BOX_W + _GAP_X), _MARGIN + 30 + depth * (_BOX_H + _GAP_Y))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        'font-family="sans-serif" font-size="11">',
        "<defs>"
        + "".join(
            f'<marker id="{kind}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="{color}"/></marker>'
            for kind, color in _EDGE.items()
        )
        + "</defs>",
        f'<text x="{_MARGIN}" y="{_MARGIN + 5}" font-size="13">'
        f"{html.escape(lineage.heading)}</text>",
    ]
    for source, target, kind in graph.edges(data="kind"):
        (x1, y1), (x2, y2) = at[source], at[target]
        parts.append(
            f'<line x1="{x1 + _BOX_W / 2:.0f}" y1="{y1 + _BOX_H:.0f}" x2="{x2 + _BOX_W / 2:.0f}" '
            f'y2="{y2:.0f}" stroke="{_EDGE[kind]}" marker-end="url(#{kind})"><title>{kind}'
            "</title></line>"
        )
    for node, data in graph.nodes(data=True):
        x, y = at[node]
        radius = 10 if data["kind"] == "run" else 0
        first, second = (html.escape(line) for line in data["label"])
        parts.append(
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{_BOX_W}" height="{_BOX_H}" rx="{radius}" '
            f'fill="{_FILL[data["fill"]]}" stroke="#333"/>'
            f'<text x="{x + _BOX_W / 2:.0f}" y="{y + 16:.0f}" text-anchor="middle">{first}</text>'
            f'<text x="{x + _BOX_W / 2:.0f}" y="{y + 31:.0f}" text-anchor="middle" '
            f'fill="#444">{second}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def draw_lineage(lineage: Lineage, path: str | Path) -> Path:
    """Write the lineage to ``path``: a picture (``.svg``), a page with the picture and the
    text (``.html``), or the graph as data (``.json``).

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
        text = json.dumps(lineage.to_dict(), indent=2)
    elif suffix == ".svg":
        text = lineage_svg(lineage)
    else:
        text = _html(lineage, lineage_svg(lineage))
    path.write_text(text, encoding="utf-8")
    return path


def _html(lineage: Lineage, svg: str) -> str:
    title = html.escape(lineage.heading)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
        f"<body>\n{svg}\n<pre>{html.escape(format_lineage(lineage))}</pre>\n</body></html>\n"
    )


# ---------------------------------------------------------------------------------- pipeline
class WandbLineageRun:
    """The W&B run of a pipeline's lineage, opened in a thread while the pipeline works.

    Importing wandb and opening an (offline) run take about 2 s: started with the pipeline,
    they overlap its steps (the driver only waits for them), instead of adding to its end.
    Does nothing when W&B is disabled or is the artifact store (its own lineage applies).
    """

    def __init__(self, pipeline_run_id: str, project: str) -> None:
        from util_lib.artifacts.backends import choose_backends

        self.pipeline_run_id = pipeline_run_id
        self.run: Any = None
        self.error: BaseException | None = None
        backends = choose_backends()
        self.mode = backends.wandb_mode
        self._thread: threading.Thread | None = None
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
    """Log the lineage of a pipeline run as its MLflow artifacts ``lineage/`` (``lineage.svg``,
    which MLflow's UI shows, ``lineage.html``, ``lineage.json``, ``lineage.txt``), and to W&B
    unless it is disabled.

    The lineage covers ``step_run_ids`` (default: the pipeline run's child runs), what they
    used and wrote, and ``written_specs``, each back to the raw data. It never raises: a
    failure is logged as a warning (the pipeline's result does not depend on its picture).
    With W&B as the artifact store, W&B's own lineage graph applies and nothing is drawn.
    ``wandb_run``: the W&B run opened while the pipeline worked (:class:`WandbLineageRun`);
    without it, one is opened here.

    Returns
    -------
    Path or None
        The artifact path of the picture (``lineage/lineage.svg``), None when none was logged.
    """
    try:
        from util_lib.artifacts.backends import choose_backends

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
            for suffix in FORMATS:
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
        return Path("lineage/lineage.svg")
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
    """Log the page (picture and text) to the pipeline's W&B lineage run, and end it."""
    import wandb

    run = wandb_run.wait()
    if run is None:
        return
    try:
        run.log({"lineage": wandb.Html((folder / "lineage.html").read_text(encoding="utf-8"))})
        # A copy in the run's files (uploaded with them; wandb.save would link the temporary one).
        shutil.copy(folder / "lineage.json", Path(run.dir) / "lineage.json")
    finally:
        wandb_run.finish()
