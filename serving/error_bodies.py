"""Answers of the scoring server that hold no stack trace, no server path and little of the
request: an ASGI middleware in front of MLflow's scoring app.

MLflow's scoring server puts the full traceback of a bad request into its JSON answer
(``stack_trace``: file paths of the server, library versions) and repeats the whole request in
some messages ("Failed to predict data '<every row>'. Error: ..."). The middleware keeps the
status and ``error_code`` and rewrites the body to ``{"error_code", "message"}``, where the
message is MLflow's cause only (the echoed rows and schema cut out), with paths replaced by
``<path>`` and cut to :data:`MAX_MESSAGE` characters. Answers below 400 pass untouched, unread.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

MAX_MESSAGE = 300
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


def clean_message(message: str) -> str:
    """MLflow's error message reduced to its cause: no echo of the data, no path, short."""
    text = _HINT.sub("", _drop_echoes(str(message)))
    text = _QUOTED_ERROR.sub(r"\1", text)  # Error: 'cause' -> cause
    text = " ".join(text.replace("Error: ", " ").split())
    text = _PATH.sub("<path>", text).strip(" '\".")
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1].rstrip() + "…"
    return text or "bad request"


def clean_error_body(body: bytes, status: int) -> bytes:
    """The JSON answer for an error ``status``: MLflow's ``error_code`` and a clean message."""
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
        message = clean_message(payload.get("message") or body.decode("utf-8", "replace"))
    return json.dumps({"error_code": str(code), "message": message}).encode()


class CleanErrors:
    """ASGI middleware: rewrites the body of every answer of status 400 and above.

    Parameters
    ----------
    app : ASGI application
        MLflow's scoring app (``mlflow.pyfunc.scoring_server.init(model)``).
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
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
            body = clean_error_body(b"".join(chunks), start["status"])
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

        await self.app(scope, receive, send_clean)
