"""Command line of the serving package.

    python -m serving serve -m models:/music_genre_classification@prod [--host H] [--port P]

Checks every file of the model against the digests recorded by the artifact store, then
starts MLflow's scoring server on that verified copy (see :mod:`serving.verified`).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="verify a model's files, then serve it")
    serve.add_argument(
        "-m",
        "--model-uri",
        required=True,
        help="models:/<name>@<alias>, models:/<name>/<version>, or an artifact spec "
        "(model_export:prod)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    serve.add_argument("-p", "--port", type=int, default=5000, help="port (default 5000)")
    serve.add_argument("-w", "--workers", type=int, default=1, help="server processes")
    serve.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLflow's own)")
    args = parser.parse_args(argv)

    from serving.verified import VerificationError
    from serving.verified import serve as serve_model
    from util_lib.artifacts.interface import ArtifactNotFoundError

    try:
        return serve_model(args.model_uri, args.host, args.port, args.workers, args.tracking_uri)
    except (VerificationError, ArtifactNotFoundError, OSError, ValueError) as exc:
        from util_lib.redact import redact_text

        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
