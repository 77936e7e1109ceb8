"""Tests of segregate.split.split_data."""

from __future__ import annotations

import pandas as pd
import pytest

from segregate.split import split_data


@pytest.fixture
def songs() -> pd.DataFrame:
    """Twenty rows, 3:1 imbalanced genre (15 Rap, 5 Emo), unique ids."""
    return pd.DataFrame(
        {
            "song_id": range(20),
            "tempo": [float(100 + i) for i in range(20)],
            "genre": ["Rap"] * 15 + ["Emo"] * 5,
        }
    )


def test_sizes_and_rows_partition_the_input(songs: pd.DataFrame) -> None:
    train, test = split_data(songs, test_size=0.2, random_state=0)
    assert (len(train), len(test)) == (16, 4)
    assert sorted(train["song_id"].tolist() + test["song_id"].tolist()) == list(range(20))
    assert list(train.columns) == list(songs.columns)
    assert list(test.index) == [0, 1, 2, 3]


def test_same_seed_gives_identical_splits(songs: pd.DataFrame) -> None:
    first = split_data(songs, 0.25, 42, "genre")
    second = split_data(songs, 0.25, 42, "genre")
    pd.testing.assert_frame_equal(first[0], second[0])
    pd.testing.assert_frame_equal(first[1], second[1])


def test_other_seed_gives_another_split(songs: pd.DataFrame) -> None:
    test_a = split_data(songs, 0.25, 1)[1]["song_id"].tolist()
    test_b = split_data(songs, 0.25, 2)[1]["song_id"].tolist()
    assert test_a != test_b


def test_stratification_preserves_class_proportions(songs: pd.DataFrame) -> None:
    # Over many seeds, an unstratified 4-row test set would sometimes miss Emo entirely.
    for seed in range(20):
        train, test = split_data(songs, 0.2, seed, "genre")
        assert test["genre"].value_counts().to_dict() == {"Rap": 3, "Emo": 1}
        assert train["genre"].value_counts().to_dict() == {"Rap": 12, "Emo": 4}


def test_unknown_stratify_column_raises_naming_it(songs: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="'label'"):
        split_data(songs, 0.2, 0, "label")


def test_stratify_column_with_missing_values_raises(songs: pd.DataFrame) -> None:
    holed = songs.assign(genre=songs["genre"].where(songs["song_id"] != 3))
    with pytest.raises(ValueError, match="'genre' has 1 missing"):
        split_data(holed, 0.2, 0, "genre")


@pytest.mark.parametrize("test_size", [0.0, 1.0, 1.5])
def test_test_size_out_of_range_raises(songs: pd.DataFrame, test_size: float) -> None:
    with pytest.raises(ValueError, match="test_size"):
        split_data(songs, test_size, 0)


def test_input_is_not_modified(songs: pd.DataFrame) -> None:
    before = songs.copy(deep=True)
    split_data(songs, 0.2, 0, "genre")
    pd.testing.assert_frame_equal(songs, before)
