"""The verified server answers any client input with a 400 (or 415) naming the cause, never a
500 and never a piece of the request; SIGTERM stops it with status 0.

One module-scoped ``python -m serving serve`` of a small registered model answers the
requests (tests/serving/conftest.py); the SIGTERM test starts one more, on its own.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests

from serving.local_server import PROJECT_ROOT, free_port, serve, verified_serve_command

MARK = "Zqx7-CUSTOMER-ROW"  # stands for the customer's data: no answer may hold it
JSON = "application/json"


def _env(small_model: dict[str, str], workdir: Path) -> dict[str, str]:
    """A fresh shell's environment on the small model's store, W&B off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_"))}
    env.update({k: v for k, v in small_model.items() if k not in ("MODEL_URI", "WORKDIR")})
    env["TMPDIR"] = str(workdir)
    return env


@pytest.fixture(scope="module")
def server(small_model: dict[str, str]) -> Iterator[str]:
    workdir = Path(small_model["WORKDIR"])
    log = workdir / "serve.log"
    env = _env(small_model, workdir)
    with serve(small_model["MODEL_URI"], log, cwd=workdir, env=env, verified=True) as url:
        yield url


@pytest.fixture(scope="module")
def columns(server: str, small_model: dict[str, str]) -> list[str]:
    """The model's input columns, from its input example."""
    from mlflow import MlflowClient

    client = MlflowClient(small_model["MLFLOW_TRACKING_URI"])
    source = client.get_model_version("genre_model_small", "1").source
    model_id = source.removeprefix("models:/")
    folder = client.get_logged_model(model_id).artifact_location.removeprefix("file://")
    example = json.loads((Path(folder) / "input_example.json").read_text())
    return example["dataframe_split"]["columns"]


def _row(columns: list[str], **values: object) -> list[object]:
    """A valid row (a song as the dataset holds it), with ``values`` replacing some."""
    song = {
        "danceability": 0.9, "energy": 0.7, "loudness": -5.6, "speechiness": 0.3,
        "acousticness": 0.02, "instrumentalness": 0.0, "liveness": 0.13, "valence": 0.8,
        "tempo": 138.0, "duration_ms": 226087, "time_signature": 4, "key": 0,
        "title": "BITTER (Feat. ZOTiYAC) [Remix] {live}", "song_name": None,
    }  # fmt: skip
    song.update(values)
    return [song[c] for c in columns]


def _split(columns: list[str], rows: list[list[object]]) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": rows}}).encode()


def _refused(answer: requests.Response, status: int = 400) -> str:
    """A clean refusal: the status, only error_code and message, nothing of the request."""
    assert answer.status_code == status, answer.text[:2000]
    body = answer.json()
    assert set(body) == {"error_code", "message"}, body
    assert MARK not in answer.text and "Zqx7" not in answer.text, answer.text
    for leak in ("Traceback", "stack_trace", "/tmp/", "site-packages", "\\x"):
        assert leak not in answer.text, (leak, answer.text)
    return body["message"]


def _post(url: str, body: bytes, content_type: str | None = JSON) -> requests.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.post(url, data=body, headers=headers, timeout=120)


def test_a_valid_request_still_gets_predictions(server: str, columns: list[str]) -> None:
    answer = _post(server, _split(columns, [_row(columns), _row(columns, key=5)]))
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 2


@pytest.mark.parametrize(
    ("body", "content_type", "cause"),
    [
        (b"", None, "missing Content-Type header"),
        (b"", JSON, "empty request body"),
        (b"", "text/csv", "empty request body"),
        (f'{{"inputs": "{MARK}"}}'.encode(), None, "missing Content-Type header"),
    ],
    ids=["no-body-no-type", "empty-json", "empty-csv", "json-without-type"],
)
def test_a_missing_body_or_content_type_is_a_400(
    server: str, body: bytes, content_type: str | None, cause: str
) -> None:
    message = _refused(_post(server, body, content_type))
    assert message.startswith(cause), message
    assert "application/json" in message or "JSON" in message


@pytest.mark.parametrize("depth", [10_000, 500, 65])
def test_deep_json_is_a_400_naming_the_depth(server: str, depth: int) -> None:
    body = f'{{"inputs": {"[" * depth}"{MARK}"{"]" * depth}}}'.encode()
    message = _refused(_post(server, body))
    assert message == f"JSON nested {depth + 1} levels deep: at most 64 are accepted"


def test_brackets_inside_strings_do_not_count(server: str, columns: list[str]) -> None:
    title = "[" * 100 + '\\"{' * 100
    answer = _post(server, _split(columns, [_row(columns, title=title)]))
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("content_type", [JSON, "text/csv", "application/json; charset=utf-8"])
def test_invalid_utf8_is_a_400_that_quotes_nothing(
    server: str, columns: list[str], content_type: str
) -> None:
    if content_type == "text/csv":
        body = (",".join(columns) + "\n" + f"0.9,{MARK}\xff\xfe,1\n").encode("latin-1")
    else:
        body = _split(columns, [_row(columns, title=f"{MARK}\udcff")]).replace(
            b"\\udcff", b"\xff\xfe"
        )
    message = _refused(_post(server, body, content_type))
    assert message.startswith("the request body is not valid UTF-8: invalid start byte at byte ")


def test_another_charset_or_type_is_a_415(server: str, columns: list[str]) -> None:
    body = _split(columns, [_row(columns, title=MARK)])
    assert "UTF-8" in _refused(_post(server, body, "application/json; charset=utf-16"), 415)
    assert "text/plain" in _refused(_post(server, MARK.encode(), "text/plain"), 415)


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("string-in-float-column", "Failed to convert column danceability to type 'float64'"),
        ("string-in-int-column", "column key"),
        ("inputs-scalar", "Failed to convert data"),
        ("inputs-list", "could not convert string to float"),
        ("extra-column", "extra inputs"),
        ("csv-string-in-float-column", "could not convert string to float: <value>"),
        ("parquet-string-in-float-column", "danceability"),
    ],
)
def test_a_wrong_type_is_a_400_naming_the_column_not_the_value(
    server: str, columns: list[str], case: str, cause: str
) -> None:
    content_type = JSON
    if case == "string-in-float-column":
        body = _split(columns, [_row(columns, danceability=MARK)])
    elif case == "string-in-int-column":
        body = _split(columns, [_row(columns, key=f"{MARK} 7")])
    elif case == "inputs-scalar":
        body = json.dumps({"inputs": MARK}).encode()
    elif case == "inputs-list":
        body = json.dumps({"inputs": [1.0, MARK]}).encode()
    elif case == "extra-column":
        # A required column renamed (the text columns are optional: a song may lack one).
        body = _split([MARK, *columns[1:]], [_row(columns)])
    elif case == "parquet-string-in-float-column":
        content_type = "application/vnd.apache.parquet"
        frame = pd.DataFrame([_row(columns, danceability=MARK)], columns=columns)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        body = buffer.getvalue()
    else:
        content_type = "text/csv"
        values = [str(v) for v in _row(columns, danceability=MARK)]
        body = (",".join(columns) + "\n" + ",".join(f'"{v}"' for v in values) + "\n").encode()
    message = _refused(_post(server, body, content_type))
    assert cause in message, message


def test_sigterm_stops_the_server_with_status_0(small_model: dict[str, str], tmp_path: Path):
    """As Ctrl-C does: uvicorn shuts down, the verified copy is removed, the status is 0."""
    env = {**_env(small_model, tmp_path), "PYTHONPATH": str(PROJECT_ROOT)}
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            verified_serve_command(small_model["MODEL_URI"], "127.0.0.1", port),
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_ping(process, f"http://127.0.0.1:{port}/ping", log)
        assert list(tmp_path.glob("verified-model-*")), "the verified copy is not in TMPDIR"
        process.send_signal(signal.SIGTERM)  # to the command alone, as systemd or docker stop
        assert process.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text()
    assert "Finished server process" in output, output[-3000:]  # uvicorn's clean shutdown
    assert "Traceback" not in output, output[-3000:]
    assert list(tmp_path.glob("verified-model-*")) == []
    with pytest.raises(ProcessLookupError):  # nothing of the server is left in its group
        os.killpg(process.pid, 0)


def _wait_for_ping(process: subprocess.Popen, ping: str, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if requests.get(ping, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    pytest.fail(f"{ping} did not answer in {timeout:g} s:\n{log.read_text()[-3000:]}")
