"""Command line for the embedded artifact store, mirroring ``wandb artifact``.

    python -m util_lib.artifacts list [NAME]
    python -m util_lib.artifacts get NAME:VERSION --root DIR
    python -m util_lib.artifacts alias NAME:VERSION ALIAS

The store is the one on MLflow's tracking backend at ``MLFLOW_TRACKING_URI`` (default: the
``mlflow.db`` of the current folder); ``--tracking-uri`` points elsewhere.

``alias`` also moves the alias on the Model Registry versions registered from that artifact
version (``alias model_export:v3 prod`` makes ``models:/<name>@prod`` serve it), and with
``--store wandb`` (or ``auto`` while W&B is online, as the pipeline decides) it sets the alias
on the W&B artifact instead of the embedded store's; see :mod:`util_lib.registry`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from util_lib.backends import STORE_CHOICES, choose_backends
from util_lib.registry import promote
from util_lib.store import ArtifactNotFoundError, ArtifactVersion, MlflowArtifactStore


def _run_label(store: MlflowArtifactStore, run_id: str, cache: dict[str, str]) -> str:
    if run_id not in cache:
        try:
            cache[run_id] = f"{store.client.get_run(run_id).info.run_name} ({run_id[:8]})"
        except Exception:  # a deleted run still shows by its id
            cache[run_id] = run_id[:8]
    return cache[run_id]


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """Align ``rows`` under ``header`` as a plain-text table."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def list_artifacts(store: MlflowArtifactStore, name: str | None = None) -> str:
    """Table of every version: aliases, type, digest, producer and users."""
    names = [name] if name else store.names()
    if name and name not in store.names():
        raise ArtifactNotFoundError(
            f"artifact {name!r} not found in the store at {store.tracking_uri} "
            f"(artifacts there: {', '.join(store.names()) or 'none'})"
        )
    runs: dict[str, str] = {}
    rows = []
    for artifact in names:
        for v in store.versions(artifact):
            rows.append(_row(store, v, runs))
    if not rows:
        return f"no artifacts in the store at {store.tracking_uri}"
    header = ["artifact", "aliases", "type", "sha256", "created", "produced by", "used by"]
    return f"store: {store.tracking_uri}\n" + format_table(rows, header)


def _row(store: MlflowArtifactStore, v: ArtifactVersion, runs: dict[str, str]) -> list[str]:
    created = datetime.fromtimestamp(v.created_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    users = ", ".join(_run_label(store, r, runs) for r in sorted(v.used_by)) or "-"
    return [
        v.spec,
        ", ".join(v.aliases) or "-",
        v.type,
        v.digest[:12],
        created,
        _run_label(store, v.producer_run_id, runs),
        users,
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m util_lib.artifacts", description="The embedded artifact store."
    )
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLflow's own)")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="versions, aliases, digests, producer and users")
    listing.add_argument("name", nargs="?", help="only this artifact")
    get = commands.add_parser("get", help="download a version's files")
    get.add_argument("spec", help="NAME:VERSION or NAME:ALIAS")
    get.add_argument("--root", required=True, help="folder to put the files in")
    alias = commands.add_parser("alias", help="point an alias (e.g. prod) at a version")
    alias.add_argument("spec", help="NAME:VERSION")
    alias.add_argument("alias", help="alias to set, e.g. prod or reference")
    alias.add_argument(
        "--store",
        choices=STORE_CHOICES,
        help="artifact store holding NAME (default: $UTIL_LIB_ARTIFACT_STORE, else auto: "
        "W&B when online, the embedded store otherwise)",
    )
    args = parser.parse_args(argv)

    store = MlflowArtifactStore(args.tracking_uri)
    try:
        if args.command == "list":
            print(list_artifacts(store, args.name))
        elif args.command == "get":
            version = store.resolve(args.spec)
            path = store.download(version, args.root)
            print(f"{version.spec} -> {path}")
        else:
            kind = choose_backends(args.store).artifact_store
            promotion = promote(args.spec, args.alias, kind, args.tracking_uri)
            print("\n".join(promotion.lines()))
    except (ArtifactNotFoundError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
