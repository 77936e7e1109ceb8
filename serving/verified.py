"""Serve only what was verified: a registered model's files, checked against the sha256 digests
the artifact store recorded when the training run logged them, before any model code runs.

    python -m serving serve -m models:/music_genre_classification@prod [--host H] [--port P]

The registry version names the artifact version it serves (tags ``util_lib.artifact``,
``util_lib.artifact_project``); its files are copied into a fresh folder and every one is
checked (:func:`util_lib.artifacts.files.verify_files`): a changed, added or missing file (model,
``MLmodel``, bundled code) stops here, naming it. Then MLflow's own scoring app serves that
folder (``serving/scoring_app.py``); the model's loader trusts only the skops types its
checked code lists (:mod:`util_lib.model.pyfunc`).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from util_lib.artifacts.interface import ArtifactVersion
from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.artifacts.registry import ARTIFACT_PROJECT_TAG, ARTIFACT_STORE_TAG, ARTIFACT_TAG

logger = logging.getLogger(__name__)

SERVING_DIR = Path(__file__).resolve().parent
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


class VerificationError(RuntimeError):
    """The model cannot be served as verified (unknown, not from the store, or tampered)."""


@dataclass(frozen=True)
class VerifiedModel:
    """A model folder whose every file matched its recorded digest."""

    folder: Path
    artifact: ArtifactVersion
    registry: str  # e.g. models:/music_genre_classification/4, or "" for an artifact spec


def resolve(model: str, store: MlflowArtifactStore) -> tuple[ArtifactVersion, str]:
    """The artifact version that ``model`` serves, and its registry version (if any).

    Parameters
    ----------
    model : str
        ``models:/<name>@<alias>``, ``models:/<name>/<version>``, or an artifact spec
        (``model_export:prod``, ``project/model_export:v3``).
    store : util_lib.artifacts.mlflow_store.MlflowArtifactStore
        The embedded store on the tracking backend.

    Raises
    ------
    VerificationError
        When the registry version names no artifact of the embedded store.
    util_lib.artifacts.interface.ArtifactNotFoundError
        When the artifact version does not exist.
    """
    from mlflow.exceptions import MlflowException

    match = _MODELS_URI.match(model)
    if not match:
        return store.resolve(model), ""
    client = store.client
    try:
        if match["alias"]:
            mv = client.get_model_version_by_alias(match["name"], match["alias"])
        else:
            mv = client.get_model_version(match["name"], match["version"])
    except MlflowException as exc:
        raise VerificationError(f"{model}: no such registry version ({exc.message})") from exc
    tags = mv.tags or {}
    registry = f"models:/{mv.name}/{mv.version}"
    if ARTIFACT_TAG not in tags:
        raise VerificationError(
            f"{model} ({registry}) was not registered from an artifact version, so no digests "
            "cover its files: refusing to serve it unverified"
        )
    if tags.get(ARTIFACT_STORE_TAG, "mlflow") != "mlflow":
        raise VerificationError(
            f"{model} ({registry}) serves {tags[ARTIFACT_TAG]} of the W&B store: get it with "
            "`wandb artifact get`, whose download W&B verifies, and serve that folder"
        )
    project = tags.get(ARTIFACT_PROJECT_TAG)
    spec = f"{project}/{tags[ARTIFACT_TAG]}" if project else tags[ARTIFACT_TAG]
    return store.resolve(spec), registry


def fetch_verified(model: str, folder: Path, tracking_uri: str | None = None) -> VerifiedModel:
    """Copy the files of ``model`` into the new folder ``folder``, each checked.

    Raises
    ------
    util_lib.artifacts.interface.ArtifactIntegrityError
        Naming every changed, added or missing file; nothing is left in ``folder``.
    VerificationError, util_lib.artifacts.interface.ArtifactNotFoundError
        See :func:`resolve`.
    """
    store = MlflowArtifactStore(tracking_uri)
    version, registry = resolve(model, store)
    path = store.download(version, folder)
    return VerifiedModel(Path(path), version, registry)


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    tracking_uri: str | None = None,
) -> int:
    """Verify ``model``, then run MLflow's scoring app on the verified copy until stopped.

    SIGTERM stops it as Ctrl-C (SIGINT) does, at any moment: the server finishes its requests
    and closes, the verified copy is removed, and the status is 0. Otherwise the status is
    the server's own (128 + N when it died of signal N).
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="verified-model-") as tmp:
            verified = fetch_verified(model, Path(tmp) / "model", tracking_uri)
            artifact = verified.artifact
            print(
                f"verified {len(artifact.files)} files of {artifact.qualified_spec}"
                f"{' (' + verified.registry + ')' if verified.registry else ''} against their "
                f"sha256 digests (manifest {artifact.digest[:12]})",
                flush=True,
            )
            return _run_server(_server_command(host, port, workers), verified.folder, tmp, host,
                               port)  # fmt: skip
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr, flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM before the server runs: stop as Ctrl-C does (the temporary copy is removed)."""
    raise KeyboardInterrupt


def _server_command(host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(SERVING_DIR),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "scoring_app:app",
    ]


def _run_server(command: list[str], folder: Path, cwd: str, host: str, port: int) -> int:
    """Run uvicorn on ``folder`` until it ends or a stop signal comes; return the status.

    SIGINT and SIGTERM are passed on as SIGTERM (uvicorn's graceful shutdown; a second SIGINT,
    which Ctrl-C also sends the whole process group, would force it). uvicorn then raises the
    signal again on itself, so its death by it is the clean end it is.
    """
    from mlflow.pyfunc import scoring_server

    env = {**os.environ, scoring_server._SERVER_MODEL_PATH: str(folder)}
    env.pop("PYTHONPATH", None)  # the model's own (checked) code is what must load
    print(f"serving on http://{host}:{port}/invocations", flush=True)
    stopping = threading.Event()
    server = subprocess.Popen(command, env=env, cwd=cwd)

    def stop(signum: int, frame: object) -> None:
        stopping.set()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = server.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server.poll() is None:  # an exception while waiting: never leave it behind
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    if stopping.is_set() and code in (0, -signal.SIGTERM, -signal.SIGINT):
        logger.info("server stopped")
        return 0
    return 128 - code if code < 0 else code
