"""The data contract (util_lib.step.contract) and the pandera schema built from it
(util_lib.step.data_schema): any table, no column of the songs' named in the code."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from util_lib.step.contract import (
    ContractError,
    chosen_contract_file,
    contract_from_mapping,
    read_contract,
)
from util_lib.step.data_schema import (
    DataContractError,
    data_schema,
    missing_column_problems,
    nullable_columns,
    validate,
    value_ranges,
)

REPO = Path(__file__).resolve().parents[2]

# A table of another shape: no text, an int target, categories on a string column.
PLANTS = {
    "file_url": "plants.parquet",
    "sha256": None,
    "target": "kind",
    "labels": [0, 1, 2],
    "text_feature": None,
    "columns": {
        "height": {"dtype": "float64", "min": 0.0, "max": 30.0, "role": "numerical"},
        "soil": {"dtype": "str", "categories": ["clay", "sand"], "role": "categorical"},
        "note": {"dtype": "str", "nullable": True},
        "kind": {"dtype": "int64"},
    },
}


@pytest.fixture
def plants() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "height": [1.5, 20.0, 3.25],
            "soil": ["clay", "sand", "clay"],
            "note": [None, "tall", None],
            "kind": [0, 2, 1],
        }
    )


def test_the_shipped_contract_is_the_one_config_yaml_chooses() -> None:
    contract = read_contract(chosen_contract_file())
    assert chosen_contract_file() == REPO / "conf" / "dataset" / "genres.yaml"
    assert contract.target == "genre" and len(contract.labels) == 15
    # The model's features in the order the forest was tuned with (same AUC as before).
    assert contract.features() == {
        "numerical": [
            "danceability", "energy", "loudness", "speechiness", "acousticness",
            "instrumentalness", "liveness", "valence", "tempo", "duration_ms",
        ],
        "categorical": ["time_signature", "key"],
        "nlp": ["title", "song_name"],
    }  # fmt: skip
    assert (
        contract.text_columns == ["title", "song_name"] and contract.text_feature == "text_feature"
    )
    # mode is checked for drift but is no feature; the target's balance is checked too.
    assert contract.drift_columns()[1] == ["time_signature", "key", "mode", "genre"]


def test_a_contract_without_text_has_no_text_feature() -> None:
    contract = contract_from_mapping(PLANTS)
    assert contract.features() == {"numerical": ["height"], "categorical": ["soil"], "nlp": []}
    assert contract.text_columns == []


def test_a_good_table_passes(plants: pd.DataFrame) -> None:
    schema = data_schema(contract_from_mapping(PLANTS))
    validate(plants, schema)
    assert value_ranges(schema) == {"height": (0.0, 30.0)}
    assert nullable_columns(schema) == {"note"}


@pytest.mark.parametrize(
    ("column", "value", "named"),
    [
        ("height", 31.0, r"'height' fails in_range\(0.0, 30.0\) in 1 rows \(e.g. \[31.0\]\)"),
        ("soil", "loam", r"'soil' fails isin\(categories\) in 1 rows \(e.g. \['loam'\]\)"),
        ("kind", 7, r"'kind' fails isin\(labels\) in 1 rows \(e.g. \[7\]\)"),
    ],
)
def test_a_value_outside_the_contract_is_named(
    plants: pd.DataFrame, column: str, value: object, named: str
) -> None:
    plants.loc[1, column] = value
    with pytest.raises(DataContractError, match=named):
        validate(plants, data_schema(contract_from_mapping(PLANTS)), "the plants")


def test_a_missing_column_is_named_with_the_closest_present_name(plants: pd.DataFrame) -> None:
    schema = data_schema(contract_from_mapping(PLANTS))
    renamed = plants.rename(columns={"height": "heigth"})
    assert missing_column_problems(renamed.columns, schema) == [
        "column 'height' is missing; did you mean 'heigth'?"
    ]
    assert missing_column_problems(plants.drop(columns="soil").columns, schema) == [
        "column 'soil' is missing; the columns are ['height', 'note', 'kind']"
    ]
    assert missing_column_problems(plants.columns, schema) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"target": "kinds"}, "target='kinds': must be one of the columns: height, soil"),
        ({"colour": 1}, "colour=1: unknown key"),
        ({"columns": {}}, "columns={}: must map each column's name"),
        ({"labels": []}, "labels=[]: must be null or a non-empty list"),
        ({"text_feature": "soil"}, "text_feature='soil': must be null or the name of a new"),
    ],
)
def test_a_bad_contract_is_named(change: dict, named: str) -> None:
    with pytest.raises(ContractError, match=re.escape(f"data contract plants.yaml: {named}")):
        contract_from_mapping({**PLANTS, **change}, "plants.yaml")


@pytest.mark.parametrize(
    ("column", "spec", "named"),
    [
        ("height", {"dtype": "double"}, "columns.height.dtype='double': must be one of float64"),
        ("height", {"dtype": "float64", "role": "nlp"}, "columns.height.role='nlp': must be"),
        ("height", {"dtype": "float64", "min": 0}, "give both min and max"),
        ("height", {"dtype": "float64", "max": "x", "min": 0}, "columns.height.max='x'"),
        ("soil", {"dtype": "str", "kind": 1}, "columns.soil.kind=1: unknown"),
    ],
)
def test_a_bad_column_is_named(column: str, spec: dict, named: str) -> None:
    columns = {**PLANTS["columns"], column: spec}
    with pytest.raises(ContractError, match=re.escape(named)):
        contract_from_mapping({**PLANTS, "columns": columns}, "plants.yaml")


def test_a_contract_file_is_read_and_a_relative_path_is_under_the_project_root(
    tmp_path: Path,
) -> None:
    path = tmp_path / "plants.yaml"
    path.write_text(yaml.safe_dump(PLANTS, sort_keys=False))
    assert read_contract(path) == contract_from_mapping(PLANTS)
    assert read_contract("conf/dataset/genres.yaml").target == "genre"
    with pytest.raises(ContractError, match="cannot read the data contract .*nowhere.yaml"):
        read_contract(tmp_path / "nowhere.yaml")
