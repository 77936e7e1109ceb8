"""Answers of the scoring server that hold no stack trace, no server path and nothing of the
request, and a 400 (never a 500) for any request: an ASGI middleware in front of MLflow's
scoring app.

MLflow's scoring server puts the full traceback of a bad request into its JSON answer
(``stack_trace``: file paths of the server, library versions) and repeats the request in
some messages ("Failed to predict data '<every row>'. Error: ...", "could not convert string
to float: '<a value>'", the body's bytes after a ``UnicodeDecodeError``). It answers 500 to a
request without ``Content-Type`` or body, or with JSON nested too deep for Python's parser.

The middleware reads a POST to ``/invocations`` whole first (MLflow's app reads it whole too)
and refuses, with a 400 naming the cause, what MLflow's app would fail on
(:func:`refuse_request`): no ``Content-Type``, an empty body, a JSON or CSV body that is not
UTF-8, JSON nested more than :data:`MAX_JSON_DEPTH` levels. Of every error answer it keeps
the status and ``error_code`` and rewrites the body to ``{"error_code", "message"}``, where
the message is MLflow's cause only (the echoed rows and schema cut out, bytes literals
dropped, every string of the request that is not one of the model's names replaced by
``<value>``), with paths replaced by ``<path>`` and cut to :data:`MAX_MESSAGE` characters.
Answers below 400 pass untouched, unread.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import numpy as np

MAX_MESSAGE = 300
# A request is a table: {"dataframe_split": {"data": [[...]]}} is 4 levels deep, a tensor in
# "inputs" a few more. Python's parser fails (RecursionError) near 1,000.
MAX_JSON_DEPTH = 64
JSON, CSV, PARQUET = "application/json", "text/csv", "application/vnd.apache.parquet"
CONTENT_TYPES = f"{JSON}, {CSV} or {PARQUET}"
PLACEHOLDER = "<value>"
# Words of MLflow's scoring protocol, which its messages name (never the client's data).
PROTOCOL_NAMES = frozenset(
    {"dataframe_split", "dataframe_records", "columns", "data", "index", "inputs",
     "instances", "params"}
)  # fmt: skip
# A value of the request in MLflow's message is quoted ('x', "x", `x`); a longer one is found
# bare too. Shorter bare words would hit the message's own ("to", "type").
_MIN_BARE = 6
_BYTES_LITERAL = re.compile(r"b'(?:[^'\\]|\\.)*+'" + r'|b"(?:[^"\\]|\\.)*+"')
_STEP = np.zeros(256, dtype=np.int8)
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1
_NOT_MARKS = bytes(sorted(set(range(256)) - set(b'[]{}"\\/bfnrtu')))
# An absolute path of two or more parts: /usr/lib/python3.11/..., /tmp/verified-x/model.
_PATH = re.compile(r"(?:/[\w.@+-]+){2,}/?")
# MLflow's messages that repeat the request: (start, end) of each echo, end included.
_PREDICT_ECHO = ("Failed to predict data '", "'. \nError: ")
_SCHEMA_ECHO = ("Failed to enforce schema of data '", "' with schema '", "'. Error: ")
_HINT = re.compile(r"\s*Hint: .*?for more details\.", re.S)
_QUOTED_ERROR = re.compile(r"Error: '([^'\n]*)'")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _drop_echoes(text: str) -> str:
    """Cut out the parts of MLflow's message that repeat the request's rows.

    The schema's echo sits inside the prediction's, so it goes first; rows that imitate these
    markers can defeat the cut, and the length limit then still bounds what is repeated.
    """
    start = text.find(_SCHEMA_ECHO[0])
    middle = text.find(_SCHEMA_ECHO[1], start) if start != -1 else -1
    end = text.find(_SCHEMA_ECHO[2], middle) if middle != -1 else -1
    if end != -1:
        text = text[:start] + text[end + len(_SCHEMA_ECHO[2]) :]
    start = text.find(_PREDICT_ECHO[0])
    end = text.rfind(_PREDICT_ECHO[1])  # the rows may hold anything; the cause comes last
    if start != -1 and end > start:
        text = text[:start] + text[end + len(_PREDICT_ECHO[1]) :]
    return text.split("Input:", 1)[0]  # a JSON parse error ends with the whole body


def clean_message(message: str, values: Iterable[str] = ()) -> str:
    """MLflow's error message reduced to its cause: no echo of the data, no path, short.

    Parameters
    ----------
    message : str
        MLflow's message.
    values : iterable of str
        The request's strings (:func:`request_strings`) that must not appear; each is
        replaced by ``<value>`` where quoted, or anywhere when it is 6 characters or more.
    """
    text = _BYTES_LITERAL.sub("<bytes>", scrub(str(message), values))
    text = _HINT.sub("", _drop_echoes(text))
    text = _QUOTED_ERROR.sub(r"\1", text)  # Error: 'cause' -> cause
    text = " ".join(text.replace("Error: ", " ").split())
    text = _PATH.sub("<path>", text).strip(" '\".")
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1].rstrip() + "…"
    return text or "bad request"


def clean_error_body(body: bytes, status: int, values: Iterable[str] = ()) -> bytes:
    """The JSON answer for an error ``status``: MLflow's ``error_code`` and a clean message
    (``values``: the request's strings that must not appear, see :func:`clean_message`)."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    if status >= 500:
        # An error of the server itself: its details stay in the server's log.
        code, message = payload.get("error_code") or "INTERNAL_ERROR", "internal server error"
    else:
        code = payload.get("error_code") or "BAD_REQUEST"
        message = payload.get("message") or body.decode("utf-8", "replace")
        message = clean_message(message, values)
    return json.dumps({"error_code": str(code), "message": message}).encode()


def scrub(text: str, values: Iterable[str]) -> str:
    """``text`` with each of ``values`` replaced by ``<value>``: quoted (``'v'``, ``"v"``,
    `` `v` ``) whatever its length, bare when it is 6 characters or more."""
    for value in sorted(set(values), key=len, reverse=True):
        if not value or value not in text:
            continue
        for quote in ("'", '"', "`"):
            text = text.replace(f"{quote}{value}{quote}", f"{quote}{PLACEHOLDER}{quote}")
        if len(value) >= _MIN_BARE:
            text = text.replace(value, PLACEHOLDER)
    return text


def media_type(content_type: str) -> tuple[str, str]:
    """The media type and charset (``utf-8`` by default) of a header, as MLflow reads them."""
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    charset = "utf-8"
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key == "charset":
            charset = value.lower()
    return mime, charset


def json_depth(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest, counted without parsing it.

    Only brackets, quotes and escapes are kept (each backslash with the character after it,
    which JSON allows to be one of ``"\\/bfnrtu``); escaped backslashes and quotes go next,
    so that the quotes left split the text into strings (odd parts, whose brackets do not
    count) and the rest. A 1,000-row request takes a fraction of a millisecond.
    """
    marks = body.translate(None, delete=_NOT_MARKS)
    if b"\\" in marks:
        marks = marks.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(marks.split(b'"')[::2])
    if not brackets:
        return 0
    steps = _STEP[np.frombuffer(brackets, dtype=np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max())


def _may_nest_deeper(body: bytes) -> bool:
    """Whether ``body`` holds enough opening brackets to nest over :data:`MAX_JSON_DEPTH`."""
    return body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH


def refuse_request(content_type: str | None, body: bytes) -> tuple[int, str, str] | None:
    """The answer to a request MLflow's scoring app would fail on (a 500) or echo, if any.

    Parameters
    ----------
    content_type : str or None
        The ``Content-Type`` header.
    body : bytes
        The whole body.

    Returns
    -------
    (int, str, str) or None
        Status, ``error_code`` and message (naming the cause, quoting nothing of the body),
        or None when MLflow's app may answer.
    """
    cause = _unreadable(content_type, body)
    return None if cause is None else (400, "BAD_REQUEST", cause)


def _unreadable(content_type: str | None, body: bytes) -> str | None:
    """Why MLflow's app cannot read the request (see :func:`refuse_request`), if it cannot."""
    if not content_type or not content_type.strip():
        return f"missing Content-Type header: send {CONTENT_TYPES}"
    if not body:
        return "empty request body: send rows as JSON (dataframe_split or records), CSV or Parquet"
    mime, charset = media_type(content_type)
    if mime in (JSON, CSV) and charset == "utf-8":
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"the request body is not valid UTF-8: {exc.reason} at byte {exc.start}"
    if mime == JSON and _may_nest_deeper(body) and (depth := json_depth(body)) > MAX_JSON_DEPTH:
        return f"JSON nested {depth} levels deep: at most {MAX_JSON_DEPTH} are accepted"
    return None


def request_strings(content_type: str | None, body: bytes) -> set[str]:
    """Every string of the request, which an error message must not repeat: JSON keys and
    values, CSV cells and Parquet column names and text values (numbers excepted)."""
    mime, _ = media_type(content_type or "")
    if mime == JSON:
        try:
            return _json_strings(json.loads(body))
        except (ValueError, RecursionError):
            # Not JSON: what stands between quotes is as near as it gets.
            plain = body.decode("utf-8", "replace").replace("\\\\", "").replace('\\"', "")
            return set(plain.split('"')[1::2])
    if mime == CSV:
        found: set[str] = set()
        try:
            for row in csv.reader(io.StringIO(body.decode("utf-8", "replace"))):
                found.update(cell for cell in row if not _is_number(cell))
        except csv.Error:
            pass  # the cells read so far
        return found
    if mime == PARQUET:
        return _parquet_strings(body)
    return set()


def _parquet_strings(body: bytes) -> set[str]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(pa.BufferReader(body))
    except Exception:  # noqa: BLE001 - unreadable: MLflow's message quotes none of it
        return set()
    found = set(table.column_names)
    for column in table.itercolumns():
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            found.update(value for value in column.to_pylist() if value)
    return found


def _json_strings(document: Any) -> set[str]:
    found: set[str] = set()
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            found.update(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


class CleanErrors:
    """ASGI middleware: refuses what MLflow's app would fail on (:func:`refuse_request`) and
    rewrites the body of every answer of status 400 and above.

    Parameters
    ----------
    app : ASGI application
        MLflow's scoring app (``mlflow.pyfunc.scoring_server.init(model)``).
    names : iterable of str
        The model's own names (input columns, parameters), which a message may name even
        when the request holds them too.
    """

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], names: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.names = frozenset(names) | PROTOCOL_NAMES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        content_type = _header(scope, b"content-type")
        if scope.get("method") == "POST" and scope.get("path") == "/invocations":
            read = await _read_body(receive)
            if read is None:  # the client went away
                return
            body, receive = read
            refusal = refuse_request(content_type, body)
            if refusal is not None:
                await _answer(send, *refusal)
                return
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_clean(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held until the whole body has come
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            values = request_strings(content_type, body) - self.names if body else set()
            cleaned = clean_error_body(b"".join(chunks), start["status"], values)
            await _send_json(send, start, cleaned)

        await self.app(scope, receive, send_clean)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _read_body(receive: Receive) -> tuple[bytes, Receive] | None:
    """The whole request body, and a ``receive`` that hands it to the app as one message;
    None when the client disconnects first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error_code": code, "message": message}).encode()
    await _send_json(send, {"type": "http.response.start", "status": status}, body)


async def _send_json(send: Send, start: Message, body: bytes) -> None:
    headers = [
        (name, value)
        for name, value in start.get("headers", [])
        if name.lower() not in (b"content-length", b"content-type")
    ]
    headers += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})
