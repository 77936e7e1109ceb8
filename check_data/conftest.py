"""pytest set-up of the data-check suite: its options, the tracked run and the two datasets.

The suite runs as one tracked step run (``check_data``, job type ``data_check``): the first
test that needs data opens it and resolves both artifacts; ``pytest_sessionfinish`` logs the
results as metrics and ends it, failed when any test failed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from check_data.checks import KL_THRESHOLD, NUMERICAL_COLUMNS, KSResult, ks_drift

if TYPE_CHECKING:
    from util_lib.tracking import Run

logger = logging.getLogger(__name__)

_OPTIONS = ("reference_artifact", "sample_artifact", "ks_alpha")
_RUN = pytest.StashKey["Run"]()
_METRICS = pytest.StashKey[dict[str, float]]()
_PASSED = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the step's parameters as command-line options."""
    group = parser.getgroup("check_data", "data-check step")
    group.addoption(
        "--reference_artifact",
        action="store",
        default=None,
        help="trusted data artifact, e.g. preprocessed_data:reference",
    )
    group.addoption(
        "--sample_artifact",
        action="store",
        default=None,
        help="data artifact to check, e.g. preprocessed_data:latest",
    )
    group.addoption(
        "--ks_alpha",
        action="store",
        type=float,
        default=None,
        help="family-wise significance level of the KS drift tests, in (0, 1)",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to start without the step's parameters (they have no defaults)."""
    config = session.config
    missing = [f"--{name}" for name in _OPTIONS if config.getoption(name) in (None, "")]
    if missing:
        raise pytest.UsageError(f"check_data needs {', '.join(missing)}")
    alpha = config.getoption("ks_alpha")
    if not 0 < alpha < 1:
        raise pytest.UsageError(f"--ks_alpha must be in (0, 1), got {alpha}")
    config.stash[_METRICS] = {}


@pytest.fixture(scope="session")
def run(pytestconfig: pytest.Config) -> Run:
    """The step's tracked run, ended by :func:`pytest_sessionfinish`."""
    from util_lib.tracking import open_run

    config = {name: pytestconfig.getoption(name) for name in _OPTIONS}
    try:
        tracked = open_run(
            step="check_data",
            job_type="data_check",
            config={**config, "kl_threshold": KL_THRESHOLD},
        )
    except Exception as exc:
        # No run, no checks: stop once here rather than error every test.
        logger.error("check_data cannot open its run: %s: %s", type(exc).__name__, exc)
        pytest.exit(f"check_data cannot open its run: {exc}", returncode=1)
    pytestconfig.stash[_RUN] = tracked
    return tracked


@pytest.fixture(scope="session")
def artifact_paths(run: Run, pytestconfig: pytest.Config) -> dict[str, Path]:
    """Resolve both artifacts to local files; warn when they are the same version."""
    paths, versions = {}, {}
    for role in ("reference_artifact", "sample_artifact"):
        spec = pytestconfig.getoption(role)
        try:
            paths[role] = run.use_artifact(spec)
        except Exception as exc:
            # Without the data no check can run: stop once here rather than error every test.
            logger.error("cannot resolve --%s %s: %s: %s", role, spec, type(exc).__name__, exc)
            pytest.exit(f"check_data cannot resolve --{role} {spec}: {exc}", returncode=1)
        # Run.used lists the resolved `name:vN` of every artifact used, in order.
        versions[role] = run.used[-1]
    if versions["reference_artifact"] == versions["sample_artifact"]:
        logger.warning(
            "reference %r and sample %r are the same version %s: the drift tests compare the "
            "data with itself (expected on the first run of a fresh store)",
            pytestconfig.getoption("reference_artifact"),
            pytestconfig.getoption("sample_artifact"),
            versions["sample_artifact"],
        )
    return paths


@pytest.fixture(scope="session")
def data(artifact_paths: dict[str, Path]) -> pd.DataFrame:
    """The data to check (``--sample_artifact``), read once per session."""
    df = pd.read_parquet(artifact_paths["sample_artifact"])
    logger.info("sample data: %d rows, %d columns", *df.shape)
    return df


@pytest.fixture(scope="session")
def ref_data(artifact_paths: dict[str, Path]) -> pd.DataFrame:
    """The trusted data (``--reference_artifact``), read once per session."""
    df = pd.read_parquet(artifact_paths["reference_artifact"])
    logger.info("reference data: %d rows, %d columns", *df.shape)
    return df


@pytest.fixture(scope="session")
def metrics(pytestconfig: pytest.Config) -> dict[str, float]:
    """Values that tests record; logged as metrics of the run at the end of the session."""
    return pytestconfig.stash[_METRICS]


@pytest.fixture(scope="session")
def ks_results(
    data: pd.DataFrame,
    ref_data: pd.DataFrame,
    pytestconfig: pytest.Config,
    metrics: dict[str, float],
) -> dict[str, KSResult]:
    """KS test of every numerical column, Bonferroni-corrected over all of them at once."""
    results = ks_drift(ref_data, data, NUMERICAL_COLUMNS, pytestconfig.getoption("ks_alpha"))
    metrics.update({f"ks_p_value.{r.column}": r.p_value for r in results})
    metrics["ks_min_p_value"] = min(r.p_value for r in results)
    return {r.column: r for r in results}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Write every check's outcome to the pipeline log (pytest only prints its own report)."""
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        reason = crash.message if crash is not None else str(report.longrepr)
        logger.error("%s FAILED (%s): %s", report.nodeid, report.when, reason)
    elif report.when == "call":
        logger.info("%s %s", report.nodeid, report.outcome)
    elif report.skipped:
        logger.info("%s skipped", report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Log the results as metrics and end the run, failed when any check failed."""
    tracked = session.config.stash.get(_RUN, None)
    if tracked is None:
        return  # no test opened the run (usage error, nothing collected)
    values: dict[str, Any] = dict(session.config.stash.get(_METRICS, {}))
    values["checks_failed"] = session.testsfailed
    values["checks_run"] = session.testscollected
    failed = exitstatus != 0
    try:
        tracked.log_metrics(values)
    finally:
        logger.log(
            logging.ERROR if failed else logging.INFO,
            "data check %s (exit status %d): %d of %d checks failed",
            "FAILED" if failed else "passed",
            exitstatus,
            session.testsfailed,
            session.testscollected,
        )
        tracked.close(failed=failed)
    session.config.stash[_PASSED] = not failed


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Once pytest has reported, end a passed check's process without the interpreter's
    teardown (util_lib.process_exit); a failed check exits the ordinary way."""
    if config.stash.get(_PASSED, False):
        from util_lib.process_exit import exit_quickly

        exit_quickly(0)
