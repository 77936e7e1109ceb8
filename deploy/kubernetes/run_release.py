#!/usr/bin/env python
"""Run a release of the pipeline from git inside a Kubernetes job.

`mlflow run deploy/kubernetes --backend kubernetes` starts this script in a container of the
image built from the Dockerfile beside it. The script runs ``mlflow run <repository> -v
<version> --env-manager local`` under the MLflow run that the Kubernetes backend created
(``$MLFLOW_RUN_ID``), so the pipeline's steps nest under it and record the release's commit.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys


def container_arguments(argv: list[str]) -> list[str]:
    """Undo the quoting MLflow's Kubernetes backend puts on the container's arguments.

    The backend shell-quotes every word of the entry point's command and hands the words to
    the container as its command, where no shell removes the quotes again
    (``mlflow.projects.kubernetes._get_run_command``): ``''`` arrives for an empty parameter,
    ``'a b'`` for one with a space.
    """
    return shlex.split(" ".join(argv))


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the entry point's arguments (see MLproject)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", required=True, help="git URL of the project")
    parser.add_argument("--version", required=True, help="release tag, branch or commit")
    parser.add_argument("--hydra_options", default="", help="Hydra overrides of config.yaml")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the release in this container's environment, under the job's MLflow run."""
    args = parse_args(container_arguments(sys.argv[1:] if argv is None else argv))
    import mlflow.projects

    mlflow.projects.run(
        args.repository,
        entry_point="main",
        version=args.version,
        parameters={"hydra_options": args.hydra_options},
        env_manager="local",  # the image is the environment
        run_id=os.environ.get("MLFLOW_RUN_ID"),
        synchronous=True,
    )


if __name__ == "__main__":
    main()
