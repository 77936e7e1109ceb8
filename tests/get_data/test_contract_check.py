"""get_data's check of a file against the data contract (columns and dtypes) before storing it:
unit tests of the check, and the driver's last line when it stops a pipeline (e2e)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from get_data.contract_check import check_file_columns
from util_lib.step.contract import read_contract
from util_lib.step.data_schema import DataContractError

REPO = Path(__file__).resolve().parents[2]
CONTRACT = read_contract("conf/dataset/genres.yaml")
URL = "https://data.example/songs.parquet"


@pytest.fixture(scope="module")
def table(dataset_path: Path):
    """The shipped songs, 200 rows, as an Arrow table."""
    return pq.read_table(dataset_path).slice(0, 200)


def _write(table, folder: Path) -> Path:
    path = folder / "songs.parquet"
    pq.write_table(table, path)
    return path


def test_the_shipped_file_passes(dataset_path: Path) -> None:
    check_file_columns(dataset_path, CONTRACT, str(dataset_path))


def test_a_renamed_column_is_named_with_the_closest_present_name(table, tmp_path: Path) -> None:
    names = ["danceabilty" if n == "danceability" else n for n in table.column_names]
    path = _write(table.rename_columns(names), tmp_path)
    with pytest.raises(DataContractError) as error:
        check_file_columns(path, CONTRACT, URL)
    assert str(error.value) == (
        f"column 'danceability' is missing from {URL}; did you mean 'danceabilty'?"
    )


def test_every_missing_column_and_wrong_dtype_is_named_at_once(table, tmp_path: Path) -> None:
    tempo = table.column("tempo").cast("string")
    dropped = table.drop_columns(["genre", "valence"])
    changed = dropped.set_column(dropped.schema.get_field_index("tempo"), "tempo", tempo)
    path = _write(changed, tmp_path)
    with pytest.raises(DataContractError) as error:
        check_file_columns(path, CONTRACT, URL)
    message = str(error.value)
    # No present name close to valence: the columns present are listed instead.
    assert f"column 'valence' is missing from {URL}; the columns are ['danceability'," in message
    assert f"column 'genre' is missing from {URL}; " in message
    assert re.search(r"column 'tempo' fails dtype\('float64'\).*got str", message), message


def test_other_columns_and_values_are_left_to_check_data(table, tmp_path: Path) -> None:
    # An extra column of any type, and a value out of range: not get_data's business.
    extra = table.append_column("comment", table.column("genre"))
    dance = extra.column("danceability").to_pylist()
    dance[0] = 7.0
    index = extra.schema.get_field_index("danceability")
    path = _write(extra.set_column(index, "danceability", [dance]), tmp_path)
    check_file_columns(path, CONTRACT, URL)


@pytest.mark.e2e
def test_the_driver_stops_at_get_data_naming_the_column_last(table, tmp_path: Path) -> None:
    """A renamed column that the model does not read (the config check looks only at the
    model's columns in a local file): get_data refuses the file before storing a version, and
    its cause is the last line the driver prints."""
    from tests.pipeline_runs import mlflow_run

    names = ["modus" if n == "mode" else n for n in table.column_names]
    path = _write(table.rename_columns(names), tmp_path)
    run = mlflow_run(
        tmp_path / "work", f"data.file_url={path}", "data.sha256=null",
        "main.execute_steps=get_data",
    )  # fmt: skip
    assert run.returncode != 0
    last = [line for line in run.stderr.splitlines() if "mlflow.cli: === Run" not in line][-1]
    assert last.endswith(f"column 'mode' is missing from {path}; did you mean 'modus'?"), last
    assert "get_data failed: DataContractError: " in last
    assert run.store().versions("raw_data.parquet") == []
