"""The files of a sweep's report: the table as text (:func:`format_report`), the CSV
(:func:`write_csv`), the plot of AUC against the swept parameters (:func:`plot_auc`), and the
three written into the sweep folder with the best job named (:func:`write_report`).

The rows are :mod:`util_lib.pipeline.sweep_jobs`'; the Hydra callback that writes the report
after the last job is :mod:`util_lib.pipeline.sweep_report`.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from util_lib.pipeline.sweep_jobs import JobRow, best_job, promote_command, swept_parameters

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_NAME = "sweep_report"
COLUMNS = (
    "job",
    "overrides",
    "status",
    "val_auc",
    "test_auc",
    "fit_seconds",
    "model_export",
    "pipeline_run_id",
)


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _swept_values(row: JobRow, swept: list[str]) -> str:
    values = row.parameters()
    return " ".join(f"{k}={values.get(k, '')}" for k in swept)


def format_report(rows: list[JobRow], swept: list[str] | None = None) -> str:
    """The report as a plain-text table, best job marked with ``*``.

    The overrides column shows the swept parameters only (``swept``, Hydra's; else see
    :func:`swept_parameters`), named as Hydra names them; the CSV has every override.
    """
    swept = swept_parameters(rows, swept)
    from util_lib.artifacts.cli import format_table

    best = best_job(rows)
    table = [
        [
            f"{r.job}{'*' if r is best else ''}",
            _swept_values(r, swept) or "-",
            r.status,
            _number(r.val_auc, 4),
            _number(r.test_auc, 4),
            _number(r.fit_seconds, 1),
            r.model_export or "-",
        ]
        for r in rows
    ]
    header = ["job", "overrides", "status", "val_auc", "test_auc", "fit_s", "model_export"]
    return format_table(table, header)


def write_csv(rows: list[JobRow], path: Path, swept: list[str] | None = None) -> Path:
    """Write the report as CSV: one row per job, the columns of :data:`COLUMNS`, then one
    column per swept parameter (see :func:`format_report`)."""
    swept = swept_parameters(rows, swept)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=[*COLUMNS, *swept], extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            values = {k: v for k, v in asdict(row).items() if v is not None}
            values["overrides"] = " ".join(row.overrides)
            values.update({k: v for k, v in row.parameters().items() if k in swept})
            writer.writerow(values)
    return path


def _as_numbers(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def plot_auc(rows: list[JobRow], parameters: list[str]) -> Figure:
    """One panel per swept parameter: validation (and test) AUC of each job against its value."""
    from matplotlib.figure import Figure

    parameters = parameters or ["job"]
    figure = Figure(figsize=(5 * len(parameters), 4), layout="constrained")
    axes = figure.subplots(1, len(parameters), squeeze=False)[0]
    done = [r for r in rows if r.val_auc is not None]
    for ax, key in zip(axes, parameters, strict=True):
        labels = [str(r.job) if key == "job" else r.parameters().get(key, "") for r in done]
        x: list[float] | list[int] | None = _as_numbers(labels)
        ticks = sorted(set(labels), key=lambda v: (x is None, float(v) if x else v))
        if x is None:
            x = [ticks.index(label) for label in labels]
            ax.set_xticks(range(len(ticks)), ticks, rotation=30, ha="right")
        for metric, marker in (("val_auc", "o"), ("test_auc", "s")):
            points = [(xi, getattr(r, metric)) for xi, r in zip(x, done, strict=True)]
            points = [p for p in points if p[1] is not None]
            if points:
                ax.scatter(*zip(*points, strict=True), marker=marker, label=metric, alpha=0.8)
        ax.set_xlabel(key)
        ax.set_ylabel("AUC")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.suptitle(f"Sweep: AUC of {len(done)} jobs")
    return figure


@dataclass
class Report:
    """What :func:`write_report` produced."""

    rows: list[JobRow]
    text: str
    files: list[Path]
    best: JobRow | None


def write_report(
    rows: list[JobRow],
    folder: Path,
    tracking_uri: str,
    cwd: Path | None = None,
    swept: list[str] | None = None,
) -> Report:
    """Write ``sweep_report.{txt,csv,png}`` into ``folder``; return the text and the files.

    ``swept``: the keys the sweep varies, as Hydra parsed them (:func:`swept_keys`); None: read
    from the jobs' overrides (:func:`swept_parameters`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    best = best_job(rows)
    swept = swept_parameters(rows, swept)
    lines = [f"Sweep report ({len(rows)} jobs)", format_report(rows, swept), ""]
    if best is not None:
        model = f", model {best.model_export}" if best.model_export else ""
        lines.append(
            f"Best job: #{best.job} ({_swept_values(best, swept) or 'no overrides'}), "
            f"val_auc={best.val_auc:.4f}{model}"
        )
        if best.model_export:
            lines.append(f"Promote it:  {promote_command(best, tracking_uri, cwd or Path.cwd())}")
    else:
        lines.append("No job finished with a validation AUC: no best job.")
    text = "\n".join(lines)
    (folder / f"{REPORT_NAME}.txt").write_text(text + "\n", encoding="utf-8")
    csv_path = write_csv(rows, folder / f"{REPORT_NAME}.csv", swept)
    png_path = folder / f"{REPORT_NAME}.png"
    plot_auc(rows, swept).savefig(png_path, dpi=100)
    return Report(rows, text, [folder / f"{REPORT_NAME}.txt", csv_path, png_path], best)
