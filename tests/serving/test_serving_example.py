"""serving/serving_example.py's plain parts, and its exit on an error answer of a real server."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving import serving_example as client

# What MLflow's scoring server answers to a request that lacks a column (abridged).
MISSING_COLUMN = {
    "error_code": "INVALID_PARAMETER_VALUE",
    "message": "Failed to predict data '   danceability\n0  0.5'. \nError: Failed to enforce "
    "schema of data '...' with schema '...'. Error: Model is missing inputs ['energy'].",
}


def test_payload_sends_missing_values_as_null_and_keeps_types() -> None:
    rows = pd.DataFrame(
        {
            "loudness": [-5.5, np.nan],
            "key": np.array([3, 7], dtype="int64"),
            "text_feature": pd.array(["a song", None], dtype="string"),
        }
    )
    body = json.loads(client.to_payload(rows, {"predict_method": "predict_proba"}))
    assert body == {
        "dataframe_split": {
            "columns": ["loudness", "key", "text_feature"],
            "data": [[-5.5, 3, "a song"], [None, 7, None]],
        },
        "params": {"predict_method": "predict_proba"},
    }
    assert "NaN" not in client.to_payload(rows)


def test_batches_cover_every_row_once() -> None:
    rows = pd.DataFrame({"x": range(7)})
    sizes = [len(b) for b in client.batches(rows, 3)]
    assert sizes == [3, 3, 1]
    assert pd.concat(client.batches(rows, 3))["x"].tolist() == list(range(7))


def test_headline_keeps_the_cause_of_an_mlflow_message() -> None:
    assert client.headline(MISSING_COLUMN["message"]) == "Model is missing inputs ['energy']."
    assert client.headline("plain text") == "plain text"


def test_inputs_it_cannot_read_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        client.read_rows(tmp_path / "nowhere.csv")
    (tmp_path / "rows.xlsx").write_text("x")
    with pytest.raises(ValueError, match="'.xlsx'"):
        client.read_rows(tmp_path / "rows.xlsx")


def test_default_model_is_the_configured_name_at_prod() -> None:
    assert client.default_model_uri() == "models:/music_genre_classification@prod"


class _Refusing(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps(MISSING_COLUMN).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/invocations"
    server.shutdown()
    server.server_close()


@pytest.mark.integration
def test_an_error_answer_exits_1_with_the_servers_message(
    refusing_server: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pd.DataFrame({"danceability": [0.5]}).to_csv(tmp_path / "rows.csv", index=False)
    code = client.main(["--input", str(tmp_path / "rows.csv"), "--url", refusing_server])
    out = capsys.readouterr()
    assert code == 1 and out.out == ""
    assert out.err.strip() == (
        f"error: {refusing_server} answered 400: Model is missing inputs ['energy']."
    )
    client.main(["--input", str(tmp_path / "rows.csv"), "--url", refusing_server, "-v"])
    assert "Failed to predict data" in capsys.readouterr().err


@pytest.mark.integration
def test_an_unreachable_server_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from serving.local_server import free_port

    pd.DataFrame({"danceability": [0.5]}).to_csv(tmp_path / "rows.csv", index=False)
    url = f"http://127.0.0.1:{free_port()}/invocations"
    assert client.main(["--input", str(tmp_path / "rows.csv"), "--url", url]) == 1
    assert f"cannot reach {url}" in capsys.readouterr().err
