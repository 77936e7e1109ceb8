"""What the verified server's error answers keep of MLflow's: the cause, short, no paths."""

from __future__ import annotations

import json

import pytest

from serving.error_bodies import (
    MAX_MESSAGE,
    PROTOCOL_NAMES,
    clean_error_body,
    clean_message,
    json_depth,
    refuse_request,
    request_strings,
    scrub,
)

TRACE = (
    'Traceback (most recent call last):\n  File "/usr/lib/python3.11/site-packages/mlflow/'
    'pyfunc/scoring_server/__init__.py", line 201, in parse_csv_input\n'
)


def test_the_cause_is_kept_the_echoed_rows_are_not() -> None:
    rows = "   danceability  energy\n0  -50.0  0.5\n" * 200
    message = f"Failed to predict data '{rows}'. \nError: input outside the model's domain: x"
    assert clean_message(message) == "input outside the model's domain: x"


def test_paths_are_hidden_and_long_messages_cut() -> None:
    message = "Error: could not read /tmp/verified-model-x1/model/model.skops: " + "y" * 900
    cleaned = clean_message(message)
    assert "/tmp" not in cleaned and "<path>" in cleaned
    assert len(cleaned) == MAX_MESSAGE and cleaned.endswith("…")


def test_the_body_keeps_the_code_drops_the_stack_trace() -> None:
    body = json.dumps(
        {
            "error_code": "BAD_REQUEST",
            "message": "Failed to parse input as a Pandas DataFrame. Error: 'EOF inside string'",
            "stack_trace": TRACE,
        }
    ).encode()
    assert json.loads(clean_error_body(body, 400)) == {
        "error_code": "BAD_REQUEST",
        "message": "Failed to parse input as a Pandas DataFrame. EOF inside string",
    }


def test_a_server_error_says_nothing_of_its_insides() -> None:
    body = json.dumps({"error_code": "INTERNAL_ERROR", "message": TRACE}).encode()
    assert json.loads(clean_error_body(body, 500)) == {
        "error_code": "INTERNAL_ERROR",
        "message": "internal server error",
    }
    assert json.loads(clean_error_body(b"<html>oops</html>", 502))["message"] == (
        "internal server error"
    )


def test_a_schema_error_keeps_the_column_and_drops_rows_schema_and_hint() -> None:
    rows = "  danceability  key  text_feature\n1  0.285  None  SAVAGE ANTHEM"
    message = (
        f"Failed to predict data '{rows}'. \nError: Failed to enforce schema of data '{rows}' "
        "with schema '['key': long (required)]'. Error: Incompatible input types for column key. "
        "Can not safely convert float64 to int64. Hint: the type mismatch is likely caused by "
        "missing values. See `Handling <https://www.mlflow.org/docs>`_ for more details."
        "\nError: IntCastingNaNError('Cannot convert non-finite values')"
    )
    cleaned = clean_message(message)
    assert cleaned.startswith("Incompatible input types for column key.")
    assert "SAVAGE" not in cleaned and "schema" not in cleaned and "Hint" not in cleaned
    # Rows that imitate MLflow's markers may survive the cut, but only a short excerpt.
    tricky = message.replace("SAVAGE ANTHEM", "'. \nError: ' with schema '" + "z" * 5000)
    assert len(clean_message(tricky)) <= MAX_MESSAGE


def test_a_json_parse_error_does_not_repeat_the_body() -> None:
    message = (
        "Failed to parse input from JSON. Ensure that input is a valid JSON formatted string. "
        "Error: 'Expecting value: line 1 column 33 (char 32)'. Input: \n"
        '{"dataframe_split": {"columns": ["secret row"'
    )
    cleaned = clean_message(message)
    assert "Expecting value" in cleaned and "secret row" not in cleaned


def test_json_depth_counts_brackets_outside_strings_only() -> None:
    assert json_depth(b"[" * 10_000 + b"]" * 10_000) == 10_000
    assert json_depth(b'{"a": "[[[[\\"[[", "b\\\\": [[1]]}') == 3  # "b\\" ends its string
    assert json_depth(b'{"dataframe_split": {"data": [[1, "x"]]}}') == 4
    assert json_depth(b"1") == 0


@pytest.mark.parametrize(
    ("content_type", "body", "cause"),
    [
        (None, b'{"inputs": 1}', "missing Content-Type header"),
        ("", b"", "missing Content-Type header"),
        ("application/json", b"", "empty request body"),
        ("text/csv", b"a\n\xff\n", "the request body is not valid UTF-8: invalid start byte"),
        ("application/json", b"[" * 65 + b"]" * 65, "JSON nested 65 levels deep"),
    ],
)
def test_requests_mlflow_cannot_read_are_refused_naming_the_cause(
    content_type: str | None, body: bytes, cause: str
) -> None:
    status, code, message = refuse_request(content_type, body)
    assert (status, code) == (400, "BAD_REQUEST") and message.startswith(cause)


def test_readable_requests_and_other_charsets_go_to_mlflow() -> None:
    assert refuse_request("application/json", b'{"inputs": [[' + b"[" * 60 + b"]" * 62) is None
    # MLflow answers 415 to a charset it does not take: not ours to judge the bytes.
    assert refuse_request("application/json; charset=latin-1", b'{"a": "\xe9"}') is None
    assert refuse_request("application/vnd.apache.parquet", b"\xff\xfe") is None


def test_the_requests_strings_are_not_repeated_the_models_names_are() -> None:
    body = b'{"dataframe_split": {"columns": ["key", "mood"], "data": [["my song", 1]]}}'
    values = request_strings("application/json", body) - {"key", *PROTOCOL_NAMES}
    assert values == {"mood", "my song"}
    message = (
        'Failed to convert column key. ValueError("could not convert string to float: '
        "'my song'\"). Note that there were extra inputs: ['mood']; b'my song\\xff'"
    )
    cleaned = clean_message(message, values)
    assert "my song" not in cleaned and "mood" not in cleaned and "\\x" not in cleaned
    assert "column key" in cleaned and "'<value>'" in cleaned
    # Bare (unquoted) only from six characters: a short value may be a word of the message.
    assert scrub("to float: to", {"to"}) == "to float: to"
    assert scrub("float: private", {"private"}) == "float: <value>"
