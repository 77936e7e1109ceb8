"""What the verified server's error answers keep of MLflow's: the cause, short, no paths."""

from __future__ import annotations

import json

from serving.error_bodies import MAX_MESSAGE, clean_error_body, clean_message

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
