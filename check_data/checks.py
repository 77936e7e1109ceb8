"""Data checks of the preprocessed dataset: schema, classes, value ranges and drift.

Every ``check_*`` function raises :class:`DataCheckError` (an ``AssertionError``, so pytest
reports it as a failed test) whose message names each offending column and values, and
returns quietly when the data pass. No check catches its own error.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from scipy import stats

logger = logging.getLogger(__name__)

# Expected kind of every column of the preprocessed table. "integer" columns are category
# codes (the model one-hot encodes key and time_signature), "numeric" ones are measurements,
# "string" ones are pandas 3's str dtype or object columns holding only strings.
REQUIRED_COLUMNS: dict[str, str] = {
    "danceability": "numeric",
    "energy": "numeric",
    "key": "integer",
    "loudness": "numeric",
    "mode": "integer",
    "speechiness": "numeric",
    "acousticness": "numeric",
    "instrumentalness": "numeric",
    "liveness": "numeric",
    "valence": "numeric",
    "tempo": "numeric",
    "type": "string",
    "duration_ms": "numeric",
    "time_signature": "integer",
    "genre": "string",
    "song_name": "string",
    "title": "string",
    "text_feature": "string",
}

# The 15 classes of genres_mod.parquet (its `genre.unique()`); a new label is an error, not
# a silent sixteenth class.
KNOWN_GENRES: frozenset[str] = frozenset(
    {
        "Dark Trap",
        "Emo",
        "Hiphop",
        "Pop",
        "Rap",
        "RnB",
        "Trap Metal",
        "Underground Rap",
        "dnb",
        "hardstyle",
        "psytrance",
        "techhouse",
        "techno",
        "trance",
        "trap",
    }
)

# Physically meaningful bounds (inclusive), following Spotify's audio-features definitions.
# The whole real dataset lies inside them (loudness -32.9..3.1 dB, tempo 58..220 BPM,
# duration 25.6 s..15.2 min, time_signature 1..5).
VALUE_RANGES: dict[str, tuple[float, float]] = {
    # Confidences and perceptual scores are defined on [0, 1].
    "danceability": (0.0, 1.0),
    "energy": (0.0, 1.0),
    "speechiness": (0.0, 1.0),
    "acousticness": (0.0, 1.0),
    "instrumentalness": (0.0, 1.0),
    "liveness": (0.0, 1.0),
    "valence": (0.0, 1.0),
    # dBFS averaged over the track: Spotify documents -60..0; heavily mastered tracks go a
    # few dB above 0 (3.1 here), +10 leaves margin without admitting nonsense.
    "loudness": (-60.0, 10.0),
    # BPM; 0 is Spotify's "no beat detected", its estimator does not go near 300.
    "tempo": (0.0, 300.0),
    # 1 s .. 2 h in milliseconds: catches seconds or microseconds passed off as milliseconds.
    "duration_ms": (1_000, 7_200_000),
    # Pitch class 0 (C) .. 11 (B); -1 is Spotify's "no key detected".
    "key": (-1, 11),
    # 0 minor, 1 major.
    "mode": (0, 1),
    # Beats per bar; Spotify uses 0/1 when undetected and goes up to 7.
    "time_signature": (0, 7),
}

# Columns where missing values are legitimate: loudness is missing for ~9k real rows, most
# songs have either a song_name or a title. Everything else must be complete.
NULLABLE_COLUMNS: frozenset[str] = frozenset({"loudness", "song_name", "title"})

# Continuous columns compared with the Kolmogorov-Smirnov test (the model's numerical features).
NUMERICAL_COLUMNS: tuple[str, ...] = (
    "danceability",
    "energy",
    "loudness",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
    "tempo",
    "duration_ms",
)

# Discrete columns compared by KL divergence of their category frequencies (genre included:
# a change of class balance is a label shift the model was not trained for).
CATEGORICAL_COLUMNS: tuple[str, ...] = ("key", "mode", "time_signature", "genre")

# KL(sample || reference) in nats above which a categorical column counts as drifted.
# Measured on genres_mod.parquet (deduplicated): random samples of the data against the
# whole stay far below it (max over 500 draws: 0.0008 for half the data, 0.008 for 2,000
# rows; sampling noise alone is about (categories - 1) / (2 * rows) nats), while clear shifts
# exceed it: major/minor swapped 0.019, 10% of rows moved to 3/4 time 0.094, every key one
# semitone up 0.15, only half of the genres 0.68. Samples under ~2,000 rows can exceed it by
# chance alone, so the check is meant for whole datasets, not small batches.
KL_THRESHOLD = 0.01

# Probability given to a category that one side never shows, so that the divergence stays
# finite; a category new in the sample with a share p still adds about p * ln(p / 1e-6).
KL_EPSILON = 1e-6

_EXAMPLES = 5


class DataCheckError(AssertionError):
    """The data violate a check; the message names the columns and offending values."""


class KSResult(NamedTuple):
    """Two-sample Kolmogorov-Smirnov test of one column against the reference."""

    column: str
    statistic: float
    p_value: float
    threshold: float  # alpha after Bonferroni correction

    @property
    def drifted(self) -> bool:
        """Whether the sample's distribution differs significantly from the reference."""
        return self.p_value < self.threshold


def _examples(values: Iterable[object]) -> list[object]:
    """Return up to a few distinct values, as plain Python objects, for error messages."""
    unique = pd.unique(pd.Series(list(values), dtype=object))
    return [v.item() if isinstance(v, np.generic) else v for v in unique[:_EXAMPLES]]


def _raise_if(violations: list[str], what: str) -> None:
    if violations:
        raise DataCheckError(f"{what}: " + "; ".join(violations))


def _is_string_column(series: pd.Series) -> bool:
    if isinstance(series.dtype, pd.StringDtype):
        return True
    # An object column passes when every non-missing value is a str ("empty": all missing).
    return ptypes.is_object_dtype(series.dtype) and ptypes.infer_dtype(series, skipna=True) in {
        "string",
        "empty",
    }


def _has_kind(series: pd.Series, kind: str) -> bool:
    if kind == "string":
        return _is_string_column(series)
    if ptypes.is_bool_dtype(series.dtype):
        return False
    if kind == "integer":
        return ptypes.is_integer_dtype(series.dtype)
    return ptypes.is_numeric_dtype(series.dtype)


def check_columns_and_dtypes(
    df: pd.DataFrame, required: Mapping[str, str] = REQUIRED_COLUMNS
) -> None:
    """Check that every required column exists with the expected kind of dtype.

    Parameters
    ----------
    df : pandas.DataFrame
        The table to check.
    required : mapping of str to str, default=REQUIRED_COLUMNS
        Column name -> ``"numeric"``, ``"integer"`` or ``"string"``.

    Raises
    ------
    DataCheckError
        Naming the missing columns and each column of the wrong dtype with example values.
    """
    logger.info("checking %d required columns and their dtypes", len(required))
    missing = [column for column in required if column not in df.columns]
    violations = [f"column {column!r} is missing" for column in missing]
    if missing:
        violations.append(f"the columns present are {list(df.columns)}")
    for column, kind in required.items():
        if column in df.columns and not _has_kind(df[column], kind):
            violations.append(
                f"column {column!r} has dtype {df[column].dtype}, expected {kind} "
                f"(values e.g. {_examples(df[column].dropna())})"
            )
    _raise_if(violations, "schema check failed")


def check_genre_classes(
    df: pd.DataFrame, known: Collection[str] = KNOWN_GENRES, column: str = "genre"
) -> None:
    """Check that every row has a genre and that it is one of the known classes.

    Parameters
    ----------
    df : pandas.DataFrame
        The table to check.
    known : collection of str, default=KNOWN_GENRES
        The allowed class labels.
    column : str, default="genre"
        The label column.

    Raises
    ------
    DataCheckError
        Naming the column, the unknown labels and their row counts, or the missing labels.
    """
    logger.info("checking that %r holds only the %d known classes", column, len(known))
    labels = df[column]
    violations = []
    n_missing = int(labels.isna().sum())
    if n_missing:
        violations.append(f"column {column!r} has {n_missing} rows without a label")
    unknown = labels[labels.notna() & ~labels.isin(list(known))].value_counts()
    if len(unknown):
        violations.append(
            f"column {column!r} has unknown classes {unknown.to_dict()} (rows per class); "
            f"known: {sorted(known)}"
        )
    _raise_if(violations, "class check failed")
    absent = sorted(set(known) - set(labels.unique()))
    if absent:
        # Not an error: a new batch may lack a class. The KL check flags a real label shift.
        logger.warning("column %r has no rows of the classes %s", column, absent)


def check_missing_values(
    df: pd.DataFrame,
    columns: Iterable[str] = tuple(REQUIRED_COLUMNS),
    nullable: Collection[str] = NULLABLE_COLUMNS,
) -> None:
    """Check that no column outside ``nullable`` has missing values.

    Parameters
    ----------
    df : pandas.DataFrame
        The table to check.
    columns : iterable of str, default=all required columns
        The columns to check (absent ones are the schema check's business).
    nullable : collection of str, default=NULLABLE_COLUMNS
        Columns allowed to hold missing values.

    Raises
    ------
    DataCheckError
        Naming each column with missing values and how many rows lack a value.
    """
    checked = [c for c in columns if c in df.columns and c not in nullable]
    logger.info(
        "checking %d columns for missing values (allowed in %s)", len(checked), sorted(nullable)
    )
    counts = df[checked].isna().sum()
    violations = [f"column {c!r} has {int(n)} missing values" for c, n in counts.items() if n]
    _raise_if(violations, "missing-value check failed")


def check_value_ranges(
    df: pd.DataFrame, ranges: Mapping[str, tuple[float, float]] = VALUE_RANGES
) -> None:
    """Check that the values of each column lie inside its inclusive bounds.

    Missing values are ignored here (see :func:`check_missing_values`).

    Parameters
    ----------
    df : pandas.DataFrame
        The table to check.
    ranges : mapping of str to (float, float), default=VALUE_RANGES
        Column name -> (lowest, highest) allowed value.

    Raises
    ------
    DataCheckError
        Naming each column out of range, its bounds, the number of rows and example values.
    """
    logger.info("checking the value ranges of %d columns", len(ranges))
    violations = []
    for column, (low, high) in ranges.items():
        if column not in df.columns:
            violations.append(f"column {column!r} is missing")
            continue
        values = df[column]
        if not _has_kind(values, "numeric"):
            violations.append(
                f"column {column!r} is not numeric (dtype {values.dtype}, values e.g. "
                f"{_examples(values.dropna())})"
            )
            continue
        outside = values[values.notna() & ~values.between(low, high)]
        if len(outside):
            violations.append(
                f"column {column!r} has {len(outside)} values outside [{low}, {high}] "
                f"(e.g. {_examples(outside.sort_values())})"
            )
    _raise_if(violations, "range check failed")


def ks_drift(
    reference: pd.DataFrame, sample: pd.DataFrame, columns: Iterable[str], alpha: float
) -> list[KSResult]:
    """Run a two-sample Kolmogorov-Smirnov test per column, Bonferroni-corrected.

    Each column's test uses ``alpha / len(columns)`` so that ``alpha`` bounds the chance
    that any of the columns is flagged when nothing drifted. Missing values are dropped.

    Parameters
    ----------
    reference : pandas.DataFrame
        The trusted data.
    sample : pandas.DataFrame
        The new data.
    columns : iterable of str
        The numerical columns to compare.
    alpha : float
        Family-wise significance level, in (0, 1).

    Returns
    -------
    list of KSResult
        One ``(column, statistic, p_value, threshold)`` per column, in order.

    Raises
    ------
    ValueError
        If ``alpha`` is not in (0, 1) or ``columns`` is empty.
    DataCheckError
        If a column is absent or has no values on either side.
    """
    columns = list(columns)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not columns:
        raise ValueError("ks_drift needs at least one column")
    threshold = alpha / len(columns)
    logger.info(
        "KS tests on %d columns at alpha %g (Bonferroni: %.3g per column)",
        len(columns),
        alpha,
        threshold,
    )
    results = []
    for column in columns:
        ref_values = _non_missing(reference, column, "reference", numeric=True)
        new_values = _non_missing(sample, column, "sample", numeric=True)
        test = stats.ks_2samp(ref_values, new_values)
        result = KSResult(column, float(test.statistic), float(test.pvalue), threshold)
        logger.info(
            "KS %s: statistic %.4f, p-value %.3g (%s)",
            column,
            result.statistic,
            result.p_value,
            "DRIFT" if result.drifted else "ok",
        )
        results.append(result)
    return results


def check_no_drift(results: Iterable[KSResult]) -> None:
    """Raise when any KS result shows drift.

    Parameters
    ----------
    results : iterable of KSResult
        Results of :func:`ks_drift`.

    Raises
    ------
    DataCheckError
        Naming each drifted column with its statistic, p-value and threshold.
    """
    violations = [
        f"column {r.column!r} drifted (KS statistic {r.statistic:.4f}, "
        f"p-value {r.p_value:.3g} < {r.threshold:.3g})"
        for r in results
        if r.drifted
    ]
    _raise_if(violations, "KS drift check failed")


def kl_divergence(reference: pd.Series, sample: pd.Series, epsilon: float = KL_EPSILON) -> float:
    """Return KL(sample || reference) in nats between two columns' category frequencies.

    Parameters
    ----------
    reference : pandas.Series
        The trusted column.
    sample : pandas.Series
        The new column.
    epsilon : float, default=KL_EPSILON
        Probability added to every category so that unseen ones keep it finite.

    Returns
    -------
    float
        The divergence; 0 for identical frequencies.
    """
    categories = sorted(set(reference.dropna().unique()) | set(sample.dropna().unique()), key=str)
    ref_freq = reference.value_counts(normalize=True).reindex(categories, fill_value=0.0)
    new_freq = sample.value_counts(normalize=True).reindex(categories, fill_value=0.0)
    # scipy.stats.entropy renormalizes both after the epsilon is added.
    return float(stats.entropy(new_freq.to_numpy() + epsilon, ref_freq.to_numpy() + epsilon))


def kl_divergence_check(
    reference: pd.DataFrame,
    sample: pd.DataFrame,
    columns: Iterable[str],
    threshold: float = KL_THRESHOLD,
) -> dict[str, float]:
    """Check that no categorical column's frequencies diverge from the reference.

    Parameters
    ----------
    reference : pandas.DataFrame
        The trusted data.
    sample : pandas.DataFrame
        The new data.
    columns : iterable of str
        The categorical columns to compare.
    threshold : float, default=KL_THRESHOLD
        Largest acceptable KL(sample || reference), in nats.

    Returns
    -------
    dict of str to float
        The divergence of every column (when all pass).

    Raises
    ------
    DataCheckError
        Naming each column above the threshold with its divergence and the categories whose
        share changed most; or a column absent or without values on either side.
    """
    divergences: dict[str, float] = {}
    violations = []
    for column in columns:
        ref_values = _non_missing(reference, column, "reference")
        new_values = _non_missing(sample, column, "sample")
        divergence = kl_divergence(ref_values, new_values)
        divergences[column] = divergence
        logger.info("KL %s: %.4g nats (threshold %g)", column, divergence, threshold)
        if divergence > threshold:
            violations.append(
                f"column {column!r} diverges from the reference (KL {divergence:.4g} nats > "
                f"{threshold:g}; largest share changes {_share_changes(ref_values, new_values)})"
            )
    _raise_if(violations, "KL divergence check failed")
    return divergences


def _share_changes(reference: pd.Series, sample: pd.Series) -> dict[object, str]:
    """Describe the categories whose share moved most, e.g. ``{4: '0.95 -> 0.60'}``."""
    shares = pd.concat(
        [reference.value_counts(normalize=True), sample.value_counts(normalize=True)],
        axis=1,
        keys=["reference", "sample"],
    ).fillna(0.0)
    top = (shares["sample"] - shares["reference"]).abs().sort_values(ascending=False)
    return {
        _examples([category])[0]: f"{shares.at[category, 'reference']:.3f} -> "
        f"{shares.at[category, 'sample']:.3f}"
        for category in top.index[:3]
    }


def _non_missing(df: pd.DataFrame, column: str, side: str, numeric: bool = False) -> pd.Series:
    if column not in df.columns:
        raise DataCheckError(f"column {column!r} is missing from the {side} data")
    if numeric and not _has_kind(df[column], "numeric"):
        raise DataCheckError(
            f"column {column!r} of the {side} data is not numeric (dtype {df[column].dtype}, "
            f"values e.g. {_examples(df[column].dropna())})"
        )
    values = df[column].dropna()
    if values.empty:
        raise DataCheckError(f"column {column!r} has no values in the {side} data")
    return values
