#!/usr/bin/env python
"""Train the inference pipeline (preprocessing + the configured model) on the training data,
validate it and export it."""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import pandas as pd

from train_random_forest.export import export_model
from train_random_forest.model_config import read_model_config
from train_random_forest.pipeline import (
    build_pipeline,
    search_parameters,
    split_train_val,
    train_and_validate,
)
from train_random_forest.plots import plot_feature_importance
from util_lib.artifacts.registry import register_export
from util_lib.step.arguments import optional
from util_lib.step.contract import Contract, read_contract
from util_lib.step.plots import plot_confusion_matrix
from util_lib.step.process_exit import exit_quickly
from util_lib.step.run import Run, start_run

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

# Named, not __name__: run as a script, __name__ is "__main__".
logger = logging.getLogger("train_random_forest.run")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the step's command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--train_data", type=str, required=True, help="Training data artifact, e.g. data_train:v2"
    )
    parser.add_argument(
        "--model_config",
        type=str,
        required=True,
        help="YAML file holding the random_forest_pipeline section of config.yaml (or the whole "
        "config.yaml); a relative path is under the project root",
    )
    parser.add_argument(
        "--model",
        type=str,
        required=True,
        help="YAML file of the model: _target_ (a scikit-learn classifier) and its arguments, "
        "the config group model's choice, e.g. conf/model/random_forest.yaml",
    )
    parser.add_argument(
        "--export_artifact",
        type=str,
        required=True,
        help="Name of the exported model artifact; 'null' for no export",
    )
    parser.add_argument(
        "--registered_model_name",
        type=str,
        default="null",
        help="Model Registry name the export is registered under; 'null' (default): none",
    )
    parser.add_argument(
        "--random_seed", type=int, required=True, help="Seed of the train/validation split"
    )
    parser.add_argument(
        "--val_size", type=float, required=True, help="Fraction of rows used for validation"
    )
    parser.add_argument(
        "--stratify",
        type=str,
        required=True,
        help="Column the split keeps the proportions of; 'null' or '' for none",
    )
    parser.add_argument(
        "--dataset",
        type=str,
        required=True,
        help="The data contract: a file of conf/dataset/ (a relative path is under the project "
        "root), or the section main.py writes; the target, the features and their domain",
    )
    return parser.parse_args(argv)


def _apply_grid_search(
    run: Run,
    pipe: Pipeline,
    used_columns: list[str],
    X_train: pd.DataFrame,
    y_train: pd.Series,
    model_config: dict,
    contract: Contract,
) -> None:
    """Search the grid, log the best parameters, CV score and table, set the best on ``pipe``."""
    best_params, best_score, results = search_parameters(
        pipe, used_columns, X_train, y_train, model_config["grid_search"], contract
    )
    pipe.set_params(**best_params)
    # The chosen values replace the configured ones in what is logged and exported.
    model_config["grid_search_best_params"] = best_params
    run.log_params({"grid_search.best_params": best_params})
    run.log_summary({"cv_score": best_score})
    with tempfile.TemporaryDirectory() as tmp_dir:
        table = Path(tmp_dir) / "grid_search_results.csv"
        results.to_csv(table, index=False)
        mlflow.log_artifact(str(table))


def main(argv: list[str] | None = None) -> None:
    """Split, fit, validate, plot and (unless ``export_artifact`` is null) export."""
    args = parse_args(argv)
    export_artifact = optional(args.export_artifact)
    registered_model_name = optional(args.registered_model_name)

    with start_run(step="train_random_forest", job_type="train", config=vars(args)) as run:
        contract = read_contract(args.dataset)
        # The features are the contract's (its columns' roles).
        model_config = read_model_config(args.model_config, args.model, args.dataset)
        run.log_params(model_config)
        df = pd.read_parquet(run.use_artifact(args.train_data, context="training").path)
        logger.info("read %d rows from %s", len(df), args.train_data)

        X_train, X_val, y_train, y_val = split_train_val(
            df, contract.target, args.val_size, args.random_seed, optional(args.stratify)
        )
        logger.info("split: %d training rows, %d validation rows", len(X_train), len(X_val))
        pipe, used_columns = build_pipeline(model_config)
        if model_config.get("grid_search"):
            _apply_grid_search(run, pipe, used_columns, X_train, y_train, model_config, contract)
        start = time.perf_counter()
        pipe, val_auc = train_and_validate(
            pipe, used_columns, X_train, y_train, X_val, y_val, contract
        )
        run.log_summary({"fit_seconds": time.perf_counter() - start})

        logger.info("plotting feature importance and the validation confusion matrix")
        importance = plot_feature_importance(pipe)
        if importance is None:
            logger.info(
                "%s has no feature_importances_: no feature importance plot",
                type(pipe["classifier"]).__name__,
            )
        else:
            run.log_figure(importance, "feature_importance")
        run.log_figure(
            plot_confusion_matrix(pipe, X_val, y_val, title="Validation set"),
            "confusion_matrix_val",
        )

        if export_artifact is None:
            logger.info("export_artifact is null: the model is not exported")
            run.log_summary({"val_auc": val_auc})
            return
        with tempfile.TemporaryDirectory() as tmp_dir:
            model_dir = export_model(
                pipe,
                X_val,
                Path(tmp_dir) / "model_export",
                model_config.get("predict_n_jobs"),
                contract,
            )
            written, model_id = run.log_model(
                model_dir,
                name=export_artifact,
                description=(
                    f"{type(pipe['classifier']).__name__} inference pipeline "
                    "(preprocessing + model), MLflow sklearn format"
                ),
                metadata={
                    "val_auc": val_auc,
                    "model_config": model_config,
                    "train_data": args.train_data,
                },
            )
            # The validation score is also the logged model's (MLflow links the two).
            run.log_summary({"val_auc": val_auc}, model_id=model_id)
            logger.info("exported the model as %s (logged model %s)", written, model_id)
            if registered_model_name is not None:
                register_export(
                    run,
                    written,
                    model_id,
                    registered_model_name,
                    tags={"val_auc": val_auc, "train_data": args.train_data},
                )


if __name__ == "__main__":
    main()
    exit_quickly()
