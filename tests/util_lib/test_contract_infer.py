"""``python -m util_lib.step.contract infer``: a data contract from a file
(util_lib.step.contract.infer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from util_lib.step.contract import contract_from_mapping, read_contract
from util_lib.step.contract.cli import main
from util_lib.step.contract.infer import ContractInferenceError, infer_contract, write_contract
from util_lib.step.data_schema import data_schema, validate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def shop() -> pd.DataFrame:
    """Six rows of every kind of column."""
    return pd.DataFrame(
        {
            "price": [1.5, 2.25, 3.0, 2.0, None, 9.75],
            "stars": [1, 5, 3, 4, 2, 5],
            "items": [10, 200, 3000, 40, 5, 66],  # more distinct values than categories
            "colour": ["red", "blue", "red", "red", "blue", "green"],
            "review": [
                "fine product, would buy again",
                "arrived broken, sent it back",
                "exactly as described on the page",
                "a bit small for the price asked",
                None,
                "the best one I have owned so far",
            ],
            "shop": ["main"] * 6,
            "kind": ["a", "b", "a", "c", "b", "a"],
        }
    )


def test_each_column_gets_its_dtype_range_and_role(shop: pd.DataFrame, monkeypatch) -> None:
    monkeypatch.setattr("util_lib.step.contract.infer.MAX_CATEGORIES", 5)
    contract = infer_contract(shop, "kind", "shop.parquet", "ab" * 32)
    columns = contract["columns"]
    assert columns["price"] == {
        "dtype": "float64", "nullable": True, "min": 1.5, "max": 9.75, "role": "numerical",
    }  # fmt: skip
    assert columns["stars"] == {"dtype": "int64", "min": 1, "max": 5, "role": "categorical"}
    assert columns["items"]["role"] == "numerical"
    assert columns["colour"] == {
        "dtype": "str", "categories": ["blue", "green", "red"], "role": "categorical",
    }  # fmt: skip
    assert columns["review"] == {"dtype": "str", "nullable": True, "role": "text"}
    assert columns["shop"] == {"dtype": "str"}  # one value: no role
    assert columns["kind"] == {"dtype": "str"}  # the target: no role, its classes are labels
    assert contract["labels"] == ["a", "b", "c"]
    assert contract["text_feature"] == "text_feature"
    # The contract reads back, and the data it came from pass it.
    validate(shop, data_schema(contract_from_mapping(contract)))


def test_a_table_without_long_strings_has_no_text_feature(shop: pd.DataFrame) -> None:
    contract = infer_contract(shop.drop(columns="review"), "stars")
    assert contract["text_feature"] is None
    assert contract["labels"] == [1, 2, 3, 4, 5]
    assert contract_from_mapping(contract).features()["nlp"] == []


def test_an_unknown_target_is_named_with_the_closest_column(shop: pd.DataFrame) -> None:
    with pytest.raises(ContractInferenceError, match="--target 'knd' .* did you mean 'kind'"):
        infer_contract(shop, "knd")


def test_a_column_of_another_dtype_is_named(shop: pd.DataFrame) -> None:
    shop["when"] = pd.Timestamp("2024-01-01")
    with pytest.raises(ContractInferenceError, match="column 'when' has dtype datetime64"):
        infer_contract(shop, "kind")


def test_the_file_is_written_and_reads_back(shop: pd.DataFrame, tmp_path: Path) -> None:
    data = tmp_path / "shop.parquet"
    shop.to_parquet(data, index=False)
    written = write_contract(data, "kind", "shop", tmp_path / "conf")
    assert written == tmp_path / "conf" / "shop.yaml"
    text = written.read_text()
    assert text.startswith("# `dataset=shop`: made by `python -m util_lib.step.contract infer")
    contract = read_contract(written)
    assert contract.file_url == str(data) and contract.target == "kind"
    assert contract.text_columns == ["review"]
    with pytest.raises(ContractInferenceError, match="shop.yaml exists: edit it, or replace"):
        write_contract(data, "kind", "shop", tmp_path / "conf")
    assert write_contract(data, "stars", "shop", tmp_path / "conf", force=True) == written
    assert read_contract(written).target == "stars"


def test_the_command_line_names_the_problem(shop: pd.DataFrame, tmp_path, capsys) -> None:
    data = tmp_path / "shop.parquet"
    shop.to_parquet(data, index=False)
    with pytest.raises(SystemExit) as exit_:
        main(["infer", str(data), "--target", "nope", "--name", "x", "--conf-dir", str(tmp_path)])
    assert exit_.value.code == 1
    assert "python -m util_lib.step.contract infer: --target 'nope'" in capsys.readouterr().err
    main(["infer", str(data), "--target", "kind", "--name", "x", "--conf-dir", str(tmp_path)])
    assert f"wrote {tmp_path / 'x.yaml'}" in capsys.readouterr().out


def test_the_shipped_songs_give_the_shipped_roles(tmp_path: Path) -> None:
    """Inferred from the songs, the roles are those of conf/dataset/genres.yaml (which widens
    the ranges to Spotify's bounds and keeps mode out of the model)."""
    path = write_contract(REPO / "dataset" / "genres_mod.parquet", "genre", "g", tmp_path)
    inferred, shipped = read_contract(path), read_contract("conf/dataset/genres.yaml")
    assert inferred.file_url == "dataset/genres_mod.parquet"
    assert inferred.sha256 == shipped.sha256 and inferred.labels == shipped.labels
    roles = {c.name: c.role for c in inferred.columns}
    assert roles == {c.name: c.role for c in shipped.columns}


@pytest.mark.integration
def test_python_dash_m_runs_it(tmp_path: Path) -> None:
    data = tmp_path / "shop.parquet"
    pd.DataFrame({"x": [1.0, 2.0, 3.5], "y": ["a", "b", "a"]}).to_parquet(data)
    result = subprocess.run(
        [sys.executable, "-m", "util_lib.step.contract", "infer", str(data), "--target", "y",
         "--name", "tiny", "--conf-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert read_contract(tmp_path / "tiny.yaml").features()["numerical"] == ["x"]
