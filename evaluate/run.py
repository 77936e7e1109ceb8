#!/usr/bin/env python
"""Score the exported model on the test data."""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from evaluate.scoring import score_model
from util_lib.artifacts.registry import record_evaluation
from util_lib.step.contract import read_contract
from util_lib.step.plots import plot_confusion_matrix
from util_lib.step.process_exit import exit_quickly
from util_lib.step.run import start_run

# Named, not __name__: run as a script, __name__ is "__main__".
logger = logging.getLogger("evaluate.run")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the step's command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--model_export",
        type=str,
        required=True,
        help="Exported model artifact, exactly as written, e.g. model_export:v3",
    )
    parser.add_argument(
        "--test_data", type=str, required=True, help="Test data artifact, e.g. data_test:v2"
    )
    parser.add_argument(
        "--dataset",
        type=str,
        required=True,
        help="The data contract (its target): a file of conf/dataset/ (a relative path is under "
        "the project root), or the section main.py writes",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Load the model and the test data, log the test scores and confusion matrix."""
    args = parse_args(argv)
    with start_run(step="evaluate", job_type="test_model", config=vars(args)) as run:
        target = read_contract(args.dataset).target
        from util_lib.model.pyfunc import load_pipeline

        # Its files checked against their digests; .spec is the exact version (model_export:v3)
        # even if the argument says latest.
        exported = run.use_artifact(args.model_export)
        # The MLflow logged model that train made of it (none for models exported before).
        model_id = exported.version.metadata.get("model_id")
        # skops loads only the types util_lib.model.pyfunc trusts, whatever MLmodel says.
        model = load_pipeline(exported.path)
        # One thread: a forest's threads add up tree probabilities in a varying order, so the
        # predictions behind the accuracy and the confusion matrix could differ between runs
        # (score_auc already scores on one thread). Only the n_jobs the pipeline has: some
        # models have none (HistGradientBoostingClassifier).
        n_jobs = [k for k in model.get_params() if k.split("__")[-1] == "n_jobs"]
        model.set_params(**dict.fromkeys(n_jobs, 1))
        test_data = run.use_artifact(args.test_data, context="testing")
        df = pd.read_parquet(test_data.path)
        logger.info("scoring %s on %d rows of %s", args.model_export, len(df), args.test_data)

        scores = score_model(model, df, target=target)
        logger.info("test AUC %.4f, test accuracy %.4f", scores["auc"], scores["accuracy"])
        test_scores = {f"test_{name}": value for name, value in scores.items()}
        # The test scores are also the logged model's, beside its validation AUC.
        run.log_summary(test_scores, model_id=model_id)
        # The registry version of this model (if the training run registered it) keeps them too.
        record_evaluation(run, exported.spec, {**test_scores, "test_data": test_data.spec})
        run.log_figure(
            plot_confusion_matrix(
                model,
                df.drop(columns=[target]),
                df[target],
                title="Test set",
            ),
            "confusion_matrix_test",
        )


if __name__ == "__main__":
    main()
    exit_quickly()
