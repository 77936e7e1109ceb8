"""score_model on small tables with known answers."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.tree import DecisionTreeClassifier

from evaluate.scoring import score_model


@pytest.fixture
def songs() -> pd.DataFrame:
    """Six songs whose tempo alone tells the genre; ``note`` is a column no model reads."""
    return pd.DataFrame(
        {
            "tempo": [170.0, 172.0, 128.0, 126.0, 90.0, 92.0],
            "note": ["a", "b", "c", "d", "e", "f"],
            "genre": ["dnb", "dnb", "techno", "techno", "Rap", "Rap"],
        }
    )


def _model(classifier: object, songs: pd.DataFrame) -> Pipeline:
    # Like the exported pipeline: a ColumnTransformer picks its columns and drops the rest.
    pipe = make_pipeline(ColumnTransformer([("tempo", "passthrough", ["tempo"])]), classifier)
    return pipe.fit(songs.drop(columns="genre"), songs["genre"])


def test_a_perfect_model_scores_one(songs: pd.DataFrame) -> None:
    scores = score_model(_model(DecisionTreeClassifier(random_state=0), songs), songs)
    assert scores == {"auc": 1.0, "accuracy": 1.0}


def test_a_constant_model_scores_chance(songs: pd.DataFrame) -> None:
    # Always the same probabilities: AUC 0.5; always the first class (Rap): 2 of 6 right.
    scores = score_model(_model(DummyClassifier(strategy="prior"), songs), songs)
    assert scores["auc"] == pytest.approx(0.5)
    assert scores["accuracy"] == pytest.approx(2 / 6)


def test_half_right_model(songs: pd.DataFrame) -> None:
    model = _model(DecisionTreeClassifier(random_state=0), songs)
    swapped = songs.assign(genre=["dnb", "techno", "techno", "dnb", "Rap", "Rap"])
    assert score_model(model, swapped)["accuracy"] == pytest.approx(4 / 6)


def test_other_target_name(songs: pd.DataFrame) -> None:
    model = _model(DecisionTreeClassifier(random_state=0), songs)
    assert score_model(model, songs.rename(columns={"genre": "label"}), target="label") == {
        "auc": 1.0,
        "accuracy": 1.0,
    }


def test_missing_target_is_named(songs: pd.DataFrame) -> None:
    model = _model(DecisionTreeClassifier(random_state=0), songs)
    with pytest.raises(ValueError, match="'genre'"):
        score_model(model, songs.drop(columns="genre"))


def test_missing_feature_column_is_named(songs: pd.DataFrame) -> None:
    model = _model(DecisionTreeClassifier(random_state=0), songs)
    with pytest.raises(ValueError, match="tempo"):
        score_model(model, songs.drop(columns="tempo"))
