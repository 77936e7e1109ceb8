"""pytest set-up of the data-check suite: its options, the tracked run and the two datasets.

The suite runs as one tracked step run (``check_data``, job type ``data_check``): the first
test that needs data opens it and resolves both artifacts; ``pytest_sessionfinish`` records the
verdict on the sample's version (``passed`` or ``failed``, with this run's id), logs the results
as metrics and ends the run, failed when any test failed.

The reference is trusted data, so only checked data becomes it: while the alias that
``--reference_artifact`` names (``preprocessed_data:reference``) is on no version of the
sample's artifact, the drift tests are skipped with a notice, and a sample that passes every
other check gets the alias. Any other reference that does not resolve stops the suite.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from check_data.checks import KL_THRESHOLD, KSResult, ks_drift
from util_lib.artifacts.interface import parse_spec
from util_lib.step.contract import Contract, read_contract

if TYPE_CHECKING:
    from util_lib.step.run import Run

logger = logging.getLogger(__name__)

_OPTIONS = ("reference_artifact", "sample_artifact", "ks_alpha", "dataset")
# What the check does with each artifact: MLflow's dataset context of the run's inputs.
_CONTEXTS = {"reference_artifact": "reference", "sample_artifact": "validation"}
_RUN = pytest.StashKey["Run"]()
_METRICS = pytest.StashKey[dict[str, float]]()
_PASSED = pytest.StashKey[bool]()
# The sample's resolved version (name:vN), once resolved: the version the verdict is recorded on.
_SAMPLE = pytest.StashKey[str]()
# The reference spec whose alias is on no version yet (the sample gets it if it passes).
_NO_REFERENCE = pytest.StashKey[str]()


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
    group.addoption(
        "--dataset",
        action="store",
        default=None,
        help="the data contract, a file of conf/dataset/ (relative: under the project root)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One drift test per column that the contract gives the test's kind (the numerical
    columns' KS test, the categorical columns' and the target's KL divergence)."""
    if "column" not in metafunc.fixturenames:
        return
    dataset = metafunc.config.getoption("dataset")
    numerical, categorical = read_contract(dataset).drift_columns() if dataset else ([], [])
    kind = getattr(metafunc.function, "drift_kind", None)
    metafunc.parametrize("column", numerical if kind == "ks" else categorical)


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
def contract(pytestconfig: pytest.Config) -> Contract:
    """The data contract (``--dataset``)."""
    return read_contract(pytestconfig.getoption("dataset"))


@pytest.fixture(scope="session")
def run(pytestconfig: pytest.Config) -> Run:
    """The step's tracked run, ended by :func:`pytest_sessionfinish`."""
    from util_lib.step.run import open_run

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


def _same_artifact(run: Run, first: str, second: str) -> bool:
    """Whether two specs name the same artifact (of the same project)."""
    (p1, n1, _), (p2, n2, _) = parse_spec(first), parse_spec(second)
    return (p1 or run.project, n1) == (p2 or run.project, n2)


def _no_reference_notice(spec: str) -> str:
    project, name, alias = parse_spec(spec)
    artifact = f"{project}/{name}" if project else name
    return f"no reference yet: no version of {artifact} has the alias {alias!r}"


def _no_reference_yet(run: Run, reference: str, sample: str) -> bool:
    """Whether ``reference`` is an alias of the sample's artifact that no version has yet."""
    try:
        return _same_artifact(run, reference, sample) and run.alias_unset(reference)
    except Exception:  # a spec that does not parse: the resolution's own error names it
        return False


@pytest.fixture(scope="session")
def artifact_paths(run: Run, pytestconfig: pytest.Config) -> dict[str, Path | None]:
    """Resolve both artifacts to local files (the reference to None while there is none yet);
    warn when they are the same version."""
    paths: dict[str, Path | None] = {}
    versions: dict[str, str | None] = {}
    sample = pytestconfig.getoption("sample_artifact")
    for role in ("reference_artifact", "sample_artifact"):
        spec = pytestconfig.getoption(role)
        try:
            used = run.use_artifact(spec, context=_CONTEXTS[role])
        except Exception as exc:
            if role == "reference_artifact" and _no_reference_yet(run, spec, sample):
                logger.warning(
                    "%s (--reference_artifact %s): the drift tests are skipped; the sample gets "
                    "the alias if it passes every other check",
                    _no_reference_notice(spec),
                    spec,
                )
                pytestconfig.stash[_NO_REFERENCE] = spec
                paths[role] = versions[role] = None
                continue
            # Without the data no check can run: stop once here rather than error every test.
            logger.error("cannot resolve --%s %s: %s: %s", role, spec, type(exc).__name__, exc)
            pytest.exit(f"check_data cannot resolve --{role} {spec}: {exc}", returncode=1)
        paths[role] = used.path
        versions[role] = used.spec  # the exact `name:vN` resolved
    pytestconfig.stash[_SAMPLE] = versions["sample_artifact"]
    if versions["reference_artifact"] == versions["sample_artifact"]:
        logger.warning(
            "reference %r and sample %r are the same version %s: the drift tests compare the "
            "data with itself",
            pytestconfig.getoption("reference_artifact"),
            pytestconfig.getoption("sample_artifact"),
            versions["sample_artifact"],
        )
    return paths


@pytest.fixture(scope="session")
def data(artifact_paths: dict[str, Path | None]) -> pd.DataFrame:
    """The data to check (``--sample_artifact``), read once per session."""
    df = pd.read_parquet(artifact_paths["sample_artifact"])
    logger.info("sample data: %d rows, %d columns", *df.shape)
    return df


@pytest.fixture(scope="session")
def ref_data(artifact_paths: dict[str, Path | None], pytestconfig: pytest.Config) -> pd.DataFrame:
    """The trusted data (``--reference_artifact``), read once per session; the tests that need
    it are skipped while there is no reference yet."""
    if artifact_paths["reference_artifact"] is None:
        pytest.skip(
            f"{_no_reference_notice(pytestconfig.stash[_NO_REFERENCE])} (check_data sets it on "
            "the first sample that passes every other check)"
        )
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
    contract: Contract,
    pytestconfig: pytest.Config,
    metrics: dict[str, float],
) -> dict[str, KSResult]:
    """KS test of every numerical column, Bonferroni-corrected over all of them at once."""
    numerical = contract.drift_columns()[0]
    results = ks_drift(ref_data, data, numerical, pytestconfig.getoption("ks_alpha"))
    metrics.update({f"ks_p_value.{r.column}": r.p_value for r in results})
    metrics["ks_min_p_value"] = min(r.p_value for r in results)
    return {r.column: r for r in results}


# The checks that failed, "name: first line of why", for the run's failure cause.
_FAILED_CHECKS: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Write every check's outcome to the pipeline log (pytest only prints its own report)."""
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        reason = crash.message if crash is not None else str(report.longrepr)
        logger.error("%s FAILED (%s): %s", report.nodeid, report.when, reason)
        first = next((line for line in reason.splitlines() if line.strip()), "")
        _FAILED_CHECKS.append(f"{report.nodeid.split('::')[-1]} ({first.strip()})")
    elif report.when == "call":
        logger.info("%s %s", report.nodeid, report.outcome)
    elif report.skipped:
        logger.info("%s skipped", report.nodeid)


def _record_verdict(tracked: Run, config: pytest.Config, exitstatus: int) -> bool:
    """Record on the sample's version whether it passed, and give a passing sample the
    reference alias that is on no version yet. Returns False when recording failed."""
    sample = config.stash.get(_SAMPLE, None)
    # Only a suite that ran to its end has a verdict (not one interrupted or stopped early).
    if sample is None or exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return True
    passed = exitstatus == pytest.ExitCode.OK
    try:
        tracked.record_check(sample, passed)
        reference = config.stash.get(_NO_REFERENCE, None)
        if passed and reference is not None:
            # Drift was skipped, so "passed" means every other check passed.
            tracked.set_alias_if_unset(sample, parse_spec(reference)[2])
    except Exception as exc:
        logger.error("cannot record the data check on %s: %s: %s", sample, type(exc).__name__, exc)
        return False
    return True


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Record the verdict on the sample, log the results as metrics and end the run, failed
    when any check failed (or the verdict could not be recorded)."""
    tracked = session.config.stash.get(_RUN, None)
    if tracked is None:
        return  # no test opened the run (usage error, nothing collected)
    values: dict[str, Any] = dict(session.config.stash.get(_METRICS, {}))
    values["checks_failed"] = session.testsfailed
    values["checks_run"] = session.testscollected
    failed = exitstatus != 0
    if not _record_verdict(tracked, session.config, exitstatus) and not failed:
        failed = True
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
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
        cause = (
            f"{session.testsfailed} of {session.testscollected} data checks failed: "
            + "; ".join(_FAILED_CHECKS)
            if _FAILED_CHECKS
            else f"data check ended with exit status {int(exitstatus)}"
        )
        tracked.close(failed=failed, cause=cause if failed else None)
    session.config.stash[_PASSED] = not failed


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Once pytest has reported, end a passed check's process without the interpreter's
    teardown (util_lib.step.process_exit); a failed check exits the ordinary way."""
    if config.stash.get(_PASSED, False):
        from util_lib.step.process_exit import exit_quickly

        exit_quickly(0)
