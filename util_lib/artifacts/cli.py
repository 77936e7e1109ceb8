"""Command line for the embedded artifact store, mirroring ``wandb artifact``.

    python -m util_lib.artifacts list [NAME] [--project PROJECT]
    python -m util_lib.artifacts get [PROJECT/]NAME:VERSION --root DIR [--project PROJECT]
    python -m util_lib.artifacts verify [PROJECT/]NAME:VERSION [--project PROJECT]
    python -m util_lib.artifacts verify --all [--project PROJECT]
    python -m util_lib.artifacts alias [PROJECT/]NAME:VERSION ALIAS [--project PROJECT]
    python -m util_lib.artifacts lineage [PROJECT/]NAME:VERSION [--out FILE] [--project PROJECT]

The store is the one on MLflow's tracking backend at ``MLFLOW_TRACKING_URI`` (default: the
``mlflow.db`` of the current folder); ``--tracking-uri`` points elsewhere. Artifacts belong to
a project, as in W&B: ``--project`` (default: ``$WANDB_PROJECT``, else config.yaml's
``main.project_name``), or the project a spec names (``music_genre_classification_prod/
model_export:v3``).

``alias`` also moves the alias on the Model Registry versions registered from that artifact
version (``alias model_export:v3 prod`` makes ``models:/<name>@prod`` serve it), and with
``--store wandb`` (or ``auto`` while W&B is online, as the pipeline decides) it sets the alias
on the W&B artifact instead of the embedded store's; see :mod:`util_lib.artifacts.registry`.

``get`` writes only into a new or empty ``--root`` and removes what it wrote when a file does
not match its digest; ``verify`` checks a version's files in a temporary copy. Both name each
changed, added or missing file and exit 1. ``verify --all`` checks every version of every
artifact of the project (where the store keeps the files, on a local artifact location), lists
each damaged one with what is wrong with which file, records the verdict on the version (the
tag ``util_lib.damaged``, which ``list`` shows in its check column and which keeps the store
from handing the version out again for identical content) and exits 1 when any is damaged.

``lineage`` prints the chain from a version back to the raw data: each version's digest, the
run that produced it with its code and config digests, and what that run used; ``--out`` draws
it (``.svg``, ``.html``) or writes it as data (``.json``); see
:mod:`util_lib.artifacts.lineage`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from util_lib.artifacts.backends import STORE_CHOICES, choose_backends
from util_lib.artifacts.files import describe_problems
from util_lib.artifacts.interface import (
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ArtifactVersion,
    check_project,
)
from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.artifacts.registry import promote
from util_lib.redact import redact_text, redact_url


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
    """Table of every version of the store's project: aliases, type, data check, digest,
    producer, users.

    Raises
    ------
    util_lib.artifacts.interface.ArtifactNotFoundError
        When ``name`` is not an artifact of the project, naming the ones that are.
    """
    known = store.names()
    if name and name not in known:
        raise ArtifactNotFoundError(store.not_found_message(store.project, name))
    runs: dict[str, str] = {}
    rows = []
    for artifact in [name] if name else known:
        for v in store.versions(artifact):
            rows.append(_row(store, v, runs))
    where = f"store: {redact_url(store.tracking_uri)}  project: {store.project}"
    if not rows:
        others = [p for p in store.projects() if p != store.project]
        return f"{where}\nno artifacts" + (
            f" (other projects: {', '.join(others)})" if others else ""
        )
    header = ["artifact", "aliases", "type", "check", "sha256", "created", "produced by", "used by"]
    return f"{where}\n" + format_table(rows, header)


def _check_label(store: MlflowArtifactStore, v: ArtifactVersion, runs: dict[str, str]) -> str:
    """``passed (check_data 1a2b3c4d)``: the version's last data check and its run; ``-``: none.

    ``DAMAGED`` first when a check of its files found them changed (``verify --all`` says how).
    """
    label = "-"
    if v.check:
        name, _, short = _run_label(store, v.check_run_id, runs).partition(" (")
        label = f"{v.check} ({name} {short.rstrip(')')})" if short else f"{v.check} ({name})"
    if v.damaged:
        return "DAMAGED" if label == "-" else f"DAMAGED, {label}"
    return label


def verify_all(store: MlflowArtifactStore) -> tuple[str, list[str]]:
    """Check the files of every version of every artifact of the store's project.

    Returns
    -------
    (str, list of str)
        What to print (one line when every version is sound, else a table of the damaged
        versions with what is wrong with which file), and the damaged versions' specs.
    """
    rows, count = [], 0
    names = store.names()
    for name in names:
        for version in store.versions(name):
            count += 1
            try:
                store.check_files(version)
            except ArtifactIntegrityError as exc:
                rows.append([version.spec, describe_problems(exc.problems) or str(exc)])
            except Exception as exc:  # noqa: BLE001 - unreadable counts as not sound
                rows.append([version.spec, f"cannot be checked: {exc}"])
    where = f"project {store.project} of the store at {redact_url(store.tracking_uri)}"
    if not rows:
        return (
            f"all {count} versions of {len(names)} artifact(s) match their sha256 digests "
            f"({where})",
            [],
        )
    table = format_table(rows, ["version", "what is wrong"])
    return f"{len(rows)} of {count} versions damaged ({where}):\n{table}", [r[0] for r in rows]


def _row(store: MlflowArtifactStore, v: ArtifactVersion, runs: dict[str, str]) -> list[str]:
    created = datetime.fromtimestamp(v.created_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    users = ", ".join(_run_label(store, r, runs) for r in sorted(v.used_by)) or "-"
    return [
        v.spec,
        ", ".join(v.aliases) or "-",
        v.type,
        _check_label(store, v, runs),
        v.digest[:12],
        created,
        _run_label(store, v.producer_run_id, runs),
        users,
    ]


def _lineage(store: MlflowArtifactStore, spec: str, out: str | None) -> None:
    from util_lib.artifacts.lineage import format_lineage, trace_lineage
    from util_lib.artifacts.lineage_picture import FORMATS, draw_lineage

    if out and not out.lower().endswith(FORMATS):  # before any tracing
        raise ValueError(f"--out {out}: the suffix must be one of {', '.join(FORMATS)}")
    lineage = trace_lineage(store, [spec])
    print(format_lineage(lineage))
    if out:
        print(f"\ndrawn to {draw_lineage(lineage, out)}")


def _project(value: str) -> str:
    try:
        return check_project(value)
    except ValueError as exc:  # argparse shows an ArgumentTypeError's own message
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m util_lib.artifacts", description="The embedded artifact store."
    )
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLflow's own)")
    # Accepted before or after the command; after it, it is the command's own (SUPPRESS keeps a
    # value given before the command when none is given after it).
    project_help = (
        "the artifacts' project (default: $WANDB_PROJECT, else main.project_name of config.yaml)"
    )
    parser.add_argument("--project", type=_project, help=project_help)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser(
        "list", help="versions, aliases, data checks, digests, producer and users"
    )
    listing.add_argument("name", nargs="?", help="only this artifact")
    get = commands.add_parser("get", help="download a version's files, checked")
    get.add_argument("spec", help="[PROJECT/]NAME:VERSION or [PROJECT/]NAME:ALIAS")
    get.add_argument(
        "--root", required=True, help="a new or empty folder to put the files in (never others')"
    )
    verify = commands.add_parser(
        "verify", help="check every file of a version against its recorded sha256"
    )
    verify.add_argument(
        "spec", nargs="?", help="[PROJECT/]NAME:VERSION or [PROJECT/]NAME:ALIAS (or --all)"
    )
    verify.add_argument(
        "--all",
        action="store_true",
        help="check every version of every artifact of the project; list the damaged ones",
    )
    alias = commands.add_parser("alias", help="point an alias (e.g. prod) at a version")
    alias.add_argument("spec", help="[PROJECT/]NAME:VERSION")
    alias.add_argument("alias", help="alias to set, e.g. prod or reference")
    alias.add_argument(
        "--store",
        choices=STORE_CHOICES,
        help="artifact store holding NAME (default: $UTIL_LIB_ARTIFACT_STORE, else auto: "
        "W&B when online, the embedded store otherwise)",
    )
    lineage = commands.add_parser(
        "lineage", help="the chain of versions and runs back to the raw data, with digests"
    )
    lineage.add_argument("spec", help="[PROJECT/]NAME:VERSION or [PROJECT/]NAME:ALIAS")
    lineage.add_argument(
        "--out", help="also draw it to this file: .svg, .html (or .json: the graph)"
    )
    for command in (listing, get, verify, alias, lineage):
        command.add_argument(
            "--project", type=_project, default=argparse.SUPPRESS, help=project_help
        )
    args = parser.parse_args(argv)
    if args.command == "verify" and bool(args.spec) == args.all:
        verify.error("give one artifact version, or --all")

    try:
        store = MlflowArtifactStore(args.tracking_uri, args.project)
        if args.command == "list":
            print(list_artifacts(store, args.name))
        elif args.command == "get":
            version = store.resolve(args.spec)
            path = store.download(version, args.root)
            print(f"{version.spec} -> {path}")
        elif args.command == "verify" and args.all:
            report, damaged = verify_all(store)
            print(report)
            if damaged:
                print(
                    f"error: {len(damaged)} damaged version(s): {', '.join(damaged)}",
                    file=sys.stderr,
                )
                return 1
        elif args.command == "verify":
            version = store.verify(args.spec)
            print(
                f"{version.qualified_spec}: all {len(version.files)} files match their sha256 "
                f"digests (manifest {version.digest})"
            )
        elif args.command == "lineage":
            _lineage(store, args.spec, args.out)
        else:
            kind = choose_backends(args.store).artifact_store
            promotion = promote(args.spec, args.alias, kind, args.tracking_uri, args.project)
            print("\n".join(promotion.lines()))
    except (ArtifactNotFoundError, ValueError, OSError) as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
