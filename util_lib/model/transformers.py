"""Custom scikit-learn transformers of the inference pipeline.

They travel with the exported model (``code_paths`` bundles ``util_lib``), so they must stay
importable as ``util_lib.model.transformers`` and be defined at module level: skops stores a
reference to each class or function by its module path and refuses anything it cannot import.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import FLOAT_DTYPES, check_is_fitted, validate_data


class ModeImputer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Fill the missing values of each column with the value most frequent in it at fit time.

    Works on numbers and strings alike (``SimpleImputer(strategy="most_frequent")`` semantics:
    ties go to the smallest value). Missing means ``None``, ``NaN`` or ``pd.NA``.

    Attributes
    ----------
    modes_ : numpy.ndarray of shape (n_features_in_,)
        The most frequent non-missing value of each column.
    n_features_in_ : int
        Number of columns seen in :meth:`fit`.
    feature_names_in_ : numpy.ndarray of shape (n_features_in_,)
        Column names seen in :meth:`fit`, when ``X`` was a DataFrame with string column names.
    """

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> ModeImputer:
        """Learn the most frequent value of each column.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data; a DataFrame or an array, numeric or not.
        y : None
            Ignored.

        Returns
        -------
        self : ModeImputer
            The fitted imputer.

        Raises
        ------
        ValueError
            When a column holds no value at all (every entry missing): it has no mode.
        """
        X = validate_data(self, X, dtype=None, ensure_all_finite="allow-nan", reset=True)
        modes = []
        for j in range(X.shape[1]):
            column = X[:, j]
            present = column[~pd.isna(column)]
            if present.size == 0:
                raise ValueError(
                    f"ModeImputer: column {_column_name(self, j)!r} has no non-missing value, "
                    "so it has no most frequent value"
                )
            values, counts = np.unique(present, return_counts=True)
            modes.append(values[np.argmax(counts)])
        self.modes_ = np.array(modes, dtype=X.dtype)
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Return a copy of ``X`` as an array with each missing value replaced by its column's mode.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with the columns seen in :meth:`fit`.

        Returns
        -------
        numpy.ndarray of shape (n_samples, n_features)
            The filled data (``set_output(transform="pandas")`` turns it into a DataFrame).
        """
        check_is_fitted(self)
        X = validate_data(
            self, X, dtype=None, ensure_all_finite="allow-nan", reset=False, copy=True
        )
        # Only float and object arrays can hold a missing value; others pass through unchanged.
        missing = pd.isna(X)
        for j in np.flatnonzero(missing.any(axis=0)):
            X[missing[:, j], j] = self.modes_[j]
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        return tags


class MeanImputer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Fill the missing values of each numeric column with the column's mean at fit time.

    ``SimpleImputer(strategy="mean")`` semantics, except that a column holding no value at
    all is an error naming it (``SimpleImputer`` drops or keeps it silently). Missing means
    ``NaN`` (``None`` and ``pd.NA`` in a numeric DataFrame column become ``NaN``). The output
    is floating point, as a mean is.

    Attributes
    ----------
    means_ : numpy.ndarray of shape (n_features_in_,)
        The mean of the non-missing values of each column.
    n_features_in_ : int
        Number of columns seen in :meth:`fit`.
    feature_names_in_ : numpy.ndarray of shape (n_features_in_,)
        Column names seen in :meth:`fit`, when ``X`` was a DataFrame with string column names.
    """

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> MeanImputer:
        """Learn the mean of each column.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric data; a DataFrame or an array.
        y : None
            Ignored.

        Returns
        -------
        self : MeanImputer
            The fitted imputer.

        Raises
        ------
        ValueError
            When a column holds no value at all (every entry missing): it has no mean; or
            when ``X`` is not numeric.
        """
        X = validate_data(self, X, dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan", reset=True)
        present = ~np.isnan(X)
        empty = np.flatnonzero(~present.any(axis=0))
        if empty.size:
            names = ", ".join(repr(_column_name(self, j)) for j in empty)
            which = f"column {names} has" if empty.size == 1 else f"columns {names} have"
            raise ValueError(f"MeanImputer: {which} no non-missing value, so no mean")
        # nanmean in float64 whatever the input's precision, then back to the input's dtype.
        self.means_ = np.nanmean(X, axis=0, dtype=np.float64).astype(X.dtype)
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Return a copy of ``X`` as a float array with each ``NaN`` replaced by its column's mean.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric data with the columns seen in :meth:`fit`.

        Returns
        -------
        numpy.ndarray of shape (n_samples, n_features)
            The filled data (``set_output(transform="pandas")`` turns it into a DataFrame).
        """
        check_is_fitted(self)
        X = validate_data(
            self, X, dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan", reset=False, copy=True
        )
        rows, columns = np.nonzero(np.isnan(X))
        X[rows, columns] = self.means_[columns]
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def _column_name(estimator: BaseEstimator, j: int) -> str:
    """The name of column ``j`` as fitted: its DataFrame name, else sklearn's ``x<j>``."""
    names = getattr(estimator, "feature_names_in_", None)
    return str(names[j]) if names is not None else f"x{j}"


def fill_missing_text(X: ArrayLike) -> np.ndarray:
    """Return one text column as a 1-D array of ``str``, with missing entries as ``""``.

    Meant for ``FunctionTransformer(fill_missing_text)`` in front of a ``TfidfVectorizer``,
    which wants a 1-D sequence of strings and fails on ``None`` or ``NaN``.

    Parameters
    ----------
    X : array-like of shape (n_samples,) or (n_samples, 1)
        The text column (a Series when a ColumnTransformer selects it by its name).

    Returns
    -------
    numpy.ndarray of shape (n_samples,)
        The texts, ``""`` where a value was missing.

    Raises
    ------
    ValueError
        When ``X`` holds more than one column.
    """
    values = np.asarray(X, dtype=object)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(
            f"fill_missing_text expects one text column, got an array of shape {values.shape}"
        )
    values = np.where(pd.isna(values), "", values)
    return values.astype(str)


def join_text(X: ArrayLike) -> np.ndarray:
    """Join text columns into one text per row, with a space, a missing part counting as ``""``.

    Meant for ``FunctionTransformer(join_text)`` in front of a ``TfidfVectorizer``, on the data
    contract's text columns (for the songs ``title`` and ``song_name``): the exported model
    builds the text feature itself, so it takes rows as the dataset holds them. The result is
    what preprocess used to write as ``text_feature`` (stripped: ``""`` when every part misses).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_columns)
        The text columns, in the contract's order (a DataFrame when a ColumnTransformer selects
        them by a list of names).

    Returns
    -------
    numpy.ndarray of shape (n_samples,)
        The joined texts, ``str``.
    """
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
    if frame.shape[1] == 0:
        raise ValueError("join_text needs at least one text column")
    # Each column as fill_missing_text gives it to a single-column TF-IDF.
    parts = [fill_missing_text(frame.iloc[:, j]) for j in range(frame.shape[1])]
    joined = parts[0]
    for part in parts[1:]:
        joined = np.char.add(np.char.add(joined, " "), part)
    return np.char.strip(joined).astype(object)
