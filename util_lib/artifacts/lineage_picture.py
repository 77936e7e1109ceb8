"""The lineage of artifact versions as a picture (:mod:`util_lib.artifacts.lineage` traces it).

:func:`draw_lineage` draws a :class:`~util_lib.artifacts.lineage.Lineage` (PNG, SVG, HTML,
JSON: :data:`FORMATS`); :func:`log_pipeline_lineage` draws a pipeline run's and logs it to
MLflow (artifacts ``lineage/``) and to a W&B run of the pipeline's group when W&B is not
disabled (:class:`WandbLineageRun`, opened while the steps work).

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
from pathlib import Path
from typing import Any

from util_lib.artifacts.lineage import SHORT, Lineage, format_lineage, trace_lineage
from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.names import GROUP_ENV, PROJECT_ENV

logger = logging.getLogger(__name__)

FORMATS = (".png", ".svg", ".html", ".json")


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
        from util_lib.artifacts.backends import choose_backends

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
