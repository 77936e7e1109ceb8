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
about 5 s on two cores, competing with the driver and the first step (README "Performance").
A tracking URI that is not a local SQLite file (a team's server, PostgreSQL) is used as it is;
``UTIL_LIB_TRACKING_SERVER=false`` turns the server off.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from util_lib.environment import SERVER_ENV, switched_on

logger = logging.getLogger(__name__)


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
        from mlflow.server import app
        from mlflow.server.handlers import initialize_backend_stores
        from werkzeug.serving import make_server

        self.store_uri = store_uri
        # The server's stores; the registry is the same store (tests/util_lib checks that the
        # process's registry URI still follows its tracking URI afterwards).
        initialize_backend_stores(store_uri, None, default_artifact_root)
        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=_quiet_handler()
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tracking-server", daemon=True
        )
        self._thread.start()
        self.start_seconds = time.perf_counter() - start

    def stop(self) -> None:
        """Stop serving (the requests under way finish first)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serves(tracking_uri: str) -> bool:
    """Whether a pipeline on ``tracking_uri`` serves it to its steps: a local SQLite file,
    unless ``UTIL_LIB_TRACKING_SERVER`` says no."""
    return server_enabled() and tracking_uri.startswith("sqlite:///")


def start_pipeline_server(tracking_uri: str) -> PipelineServer | None:
    """Serve the store at ``tracking_uri`` when it is a local SQLite file; else None.

    Also None with ``UTIL_LIB_TRACKING_SERVER=false``, and when the server cannot start (the
    reason is logged; the steps then use the store directly).
    """
    if not serves(tracking_uri):
        return None
    from pathlib import Path

    database = Path(tracking_uri.removeprefix("sqlite:///").split("?")[0])
    try:
        return PipelineServer(tracking_uri, str(database.parent / "mlruns"))
    except Exception as error:  # noqa: BLE001 - the direct store still works
        logger.warning("no tracking server (%s): the steps use %s directly", error, tracking_uri)
        return None
