"""A tracking server for the length of one pipeline: its steps reach the local store over REST.

Each step is a process of its own. On a local SQLite store, each one imports SQLAlchemy and
Alembic and maps MLflow's tables before its first call (about 1 s of this 2-core machine); over
REST it needs only ``requests``, which MLflow imports anyway. So ``main.py`` serves MLflow's
own tracking server (its Flask app, every REST endpoint) on the pipeline's store, from a
thread of the driver, on a free loopback port; ``mlflow.run`` hands that address to the steps
as their tracking URI. The driver has MLflow and the store loaded already, so the server is up
in about 0.4 s, and it ends with the driver's process whatever ends it (the end of the
pipeline, a failed step, Ctrl-C, a kill): there is no server process to leave behind.

``mlflow server`` as a process of its own was measured too and does not pay here: it boots in
about 5 s on two cores, competing with the driver and the first step (docs/performance.md).
A tracking URI that is not a local SQLite file (a team's server, PostgreSQL) is used as it is;
``UTIL_LIB_TRACKING_SERVER=false`` turns the server off.

Only the pipeline gets in. A loopback port is open to every user of the machine (and, through
DNS rebinding, to a web page), and MLflow's server asks no one for credentials: another user
could read the store and move ``@prod`` to a model of theirs. So every request needs the
pipeline's secret (random per pipeline, never logged or recorded), which reaches the steps in
MLflow's own ``MLFLOW_TRACKING_TOKEN`` (its REST client sends it as ``Authorization: Bearer``;
the environment of another user's process is not readable), and a ``Host`` naming this server:
401 without the token, 403 for another host. The driver's own calls go to the store directly.
A user's own credentials for MLflow servers (a token, a user name and password, AWS SigV4, an
auth plugin) would take the token's place in the steps' requests: with them set, the pipeline
does without the server rather than overwrite them.

A step fails within seconds, not minutes, when the store's disk is full: the server answers
SQLite's "database or disk is full" (ENOSPC) with 507, which MLflow's client does not retry,
naming the database; and the steps' client retries other errors a few times only
(:data:`STEP_HTTP_SETTINGS`; MLflow's defaults retry 5xx answers for about 4 minutes).
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from util_lib.names import (
    HTTP_BACKOFF_FACTOR_ENV,
    HTTP_MAX_RETRIES_ENV,
    HTTP_TIMEOUT_ENV,
    SERVER_ENV,
    TRACKING_TOKEN_ENV,
    switched_on,
)

logger = logging.getLogger(__name__)

# The steps' MLflow client against the pipeline's server, unless the user set these: at most
# 3 retries, 0 + 2 + 4 s apart (plus up to 1 s of MLflow's jitter each), 30 s a request. A
# dead or stuck server fails a step in seconds; SQLite's "database is locked" (503) still gets
# its retries.
STEP_HTTP_SETTINGS = {
    HTTP_MAX_RETRIES_ENV: "3",
    HTTP_BACKOFF_FACTOR_ENV: "1",
    HTTP_TIMEOUT_ENV: "30",
}
# What SQLite and the OS say when a disk is full.
_DISK_FULL = ("database or disk is full", os.strerror(errno.ENOSPC))


def server_enabled() -> bool:
    """False when ``UTIL_LIB_TRACKING_SERVER`` says no (0, false, no, off)."""
    return switched_on(SERVER_ENV)


def _quiet_handler() -> Any:
    from werkzeug.serving import WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        # Keep-alive: a step's MLflow client reuses one connection (MLflow's requests session).
        protocol_version = "HTTP/1.1"

        def log_request(self, *args: Any, **kwargs: Any) -> None:
            """No access log on the pipeline's terminal."""

    return Handler


class _Guard:
    """WSGI middleware in front of MLflow's app: the pipeline's token and a Host of this server
    on every request; a full disk answered with an error MLflow's client does not retry.

    Parameters
    ----------
    app : WSGIApplication
        MLflow's tracking app.
    token : str
        The pipeline's secret, expected as ``Authorization: Bearer <token>``.
    database : Path
        The SQLite file the app serves (named when its disk is full).
    """

    def __init__(self, app: WSGIApplication, token: str, database: Path) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()
        self._database = database
        self.hosts: frozenset[str] = frozenset()  # set once the port is known
        self.refused = {401: 0, 403: 0}

    def allow_port(self, port: int) -> None:
        """Accept the Host names of loopback at ``port`` (what a browser sends for this
        server; a rebinding page's request names its own domain)."""
        self.hosts = frozenset(f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]"))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("HTTP_HOST", "").lower() not in self.hosts:
            self.refused[403] += 1
            return _answer(
                start_response,
                403,
                "PERMISSION_DENIED",
                "this pipeline's tracking server answers requests for 127.0.0.1, localhost or "
                "[::1] at its port only (the Host header names another)",
            )
        # Header values come as latin-1 strings (PEP 3333); compared as bytes in constant time.
        given = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1")
        if not hmac.compare_digest(given, self._expected):
            self.refused[401] += 1
            return _answer(
                start_response,
                401,
                "UNAUTHENTICATED",
                "this tracking server serves one pipeline's steps, which send its token "
                f"({TRACKING_TOKEN_ENV}); this request has none or another",
                [("WWW-Authenticate", "Bearer")],
            )
        return self._served(environ, start_response)

    def _served(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """MLflow's answer, except that a full disk is a 507 (a 5xx MLflow's client retries for
        minutes is held back and read first)."""
        held: list[Any] = []
        written: list[bytes] = []

        def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if not status.startswith("5"):
                return start_response(status, headers, exc_info)
            held[:] = [status, headers, exc_info]
            return written.append

        body = self._app(environ, hold)
        if not held:
            return body
        try:
            content = b"".join([*written, *body])
        finally:
            if hasattr(body, "close"):
                body.close()
        detail = _disk_full(content)
        if detail is None:
            start_response(*held)
            return [content]
        return _answer(
            start_response,
            507,
            "RESOURCE_EXHAUSTED",
            f"no space left on device for the tracking store {self._database} ({detail}): "
            "free space on its disk, then run the step again",
        )


def _disk_full(content: bytes) -> str | None:
    """What an error answer of MLflow's says of a full disk (SQLite's or the OS's words), or
    None when it says nothing of one."""
    try:
        message = str(json.loads(content).get("message", ""))
    except (ValueError, AttributeError):
        message = content.decode("utf-8", "replace")
    for words in _DISK_FULL:
        if words.lower() in message.lower():
            return words
    return None


def _answer(
    start_response: StartResponse,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    """An error in MLflow's JSON shape, which its client shows as ``<code>: <message>``."""
    from http import HTTPStatus

    body = json.dumps({"error_code": code, "message": message}).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *(headers or []),
        ],
    )
    return [body]


class PipelineServer:
    """MLflow's tracking server on ``store_uri``, served from a daemon thread of this process.

    Parameters
    ----------
    store_uri : str
        The store (``sqlite:///...``): the server's backend store and model registry.
    default_artifact_root : str
        Where experiments created through the server keep their files.

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:<port>``.
    start_seconds : float
        How long it took to be ready.
    """

    def __init__(self, store_uri: str, default_artifact_root: str) -> None:
        start = time.perf_counter()
        from mlflow.server import app, handlers
        from werkzeug.serving import make_server

        self.store_uri = store_uri
        # MLflow's app keeps its stores in module globals, made once: a second server in this
        # process (another pipeline, a test) would serve the first one's store.
        handlers._tracking_store = None
        handlers._model_registry_store = None
        # The server's stores; the registry is the same store (tests/util_lib checks that the
        # process's registry URI still follows its tracking URI afterwards).
        handlers.initialize_backend_stores(store_uri, None, default_artifact_root)
        token = secrets.token_urlsafe(32)
        self._guard = _Guard(app, token, _database(store_uri))
        self._server = make_server(
            "127.0.0.1", 0, self._guard, threaded=True, request_handler=_quiet_handler()
        )
        self._guard.allow_port(self._server.server_port)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        # For the steps (mlflow.run hands this process's environment to them) and for
        # mlflow.run's own calls to the server; taken back by stop().
        steps = {k: v for k, v in STEP_HTTP_SETTINGS.items() if k not in os.environ}
        self._replaced = _export({TRACKING_TOKEN_ENV: token, **steps})
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tracking-server", daemon=True
        )
        self._thread.start()
        self.start_seconds = time.perf_counter() - start

    def stop(self) -> None:
        """Stop serving (the requests under way finish first); take the token and the HTTP
        settings out of this process's environment."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        _export(self._replaced)
        self._replaced = {}
        refused = self._guard.refused
        if any(refused.values()):
            logger.warning(
                "the tracking server refused %d request(s) without the pipeline's token and %d "
                "naming another host: another process of this machine tried to reach the store",
                refused[401],
                refused[403],
            )


def _database(store_uri: str) -> Path:
    """The file of a ``sqlite:///`` URI."""
    return Path(store_uri.removeprefix("sqlite:///").split("?")[0])


def _export(values: dict[str, str | None]) -> dict[str, str | None]:
    """Set (None: remove) these variables in this process's environment; return what they
    were, for undoing it."""
    before = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return before


def _user_credentials() -> list[str]:
    """The user's MLflow credentials that would take the place of the pipeline's token in the
    steps' requests (MLflow sends one kind): a token, a user name and password (the
    environment's or ``~/.mlflow/credentials``), AWS SigV4, an auth plugin."""
    from mlflow.environment_variables import MLFLOW_TRACKING_AUTH, MLFLOW_TRACKING_AWS_SIGV4
    from mlflow.utils.credentials import read_mlflow_creds

    found = [TRACKING_TOKEN_ENV] if os.environ.get(TRACKING_TOKEN_ENV) else []
    creds = read_mlflow_creds()
    if creds.username and creds.password:
        found.append("a user name and password (MLFLOW_TRACKING_USERNAME/PASSWORD)")
    found += [v.name for v in (MLFLOW_TRACKING_AWS_SIGV4, MLFLOW_TRACKING_AUTH) if v.get()]
    return found


def serves(tracking_uri: str) -> bool:
    """Whether a pipeline on ``tracking_uri`` serves it to its steps: a local SQLite file,
    unless ``UTIL_LIB_TRACKING_SERVER`` says no or the user's own MLflow credentials are set."""
    return server_enabled() and tracking_uri.startswith("sqlite:///") and not _user_credentials()


def start_pipeline_server(tracking_uri: str) -> PipelineServer | None:
    """Serve the store at ``tracking_uri`` when it is a local SQLite file; else None.

    Also None with ``UTIL_LIB_TRACKING_SERVER=false``, with the user's own MLflow credentials
    set (named in the log), and when the server cannot start (the reason is logged); the steps
    then use the store directly.
    """
    if not serves(tracking_uri):
        if server_enabled() and tracking_uri.startswith("sqlite:///"):
            logger.info(
                "no tracking server: %s set, left for MLflow servers; the steps use %s directly",
                ", ".join(_user_credentials()),
                tracking_uri,
            )
        return None
    database = _database(tracking_uri)
    try:
        return PipelineServer(tracking_uri, str(database.parent / "mlruns"))
    except Exception as error:  # noqa: BLE001 - the direct store still works
        logger.warning("no tracking server (%s): the steps use %s directly", error, tracking_uri)
        return None
