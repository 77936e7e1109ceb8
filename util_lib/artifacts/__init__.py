"""The artifact store: versioned data and models with W&B's semantics, kept on MLflow's
tracking backend (:mod:`~util_lib.artifacts.mlflow_store`) or in W&B
(:mod:`~util_lib.artifacts.wandb_store`), behind one interface
(:mod:`~util_lib.artifacts.interface`); :func:`~util_lib.artifacts.backends.open_store` opens
the one a run uses. Also the lineage, the Model Registry's side of an exported model, the
command line ``python -m util_lib.artifacts`` (:mod:`~util_lib.artifacts.cli`), and every
sha256 the project takes (:mod:`~util_lib.artifacts.digests`: files, folders, code and
parameters, which the step runs record and the step cache compares).

Imported by the steps (through their run), serving, the driver and that command line; it
imports only the leaves (names, redact), never :mod:`util_lib.step` or
:mod:`util_lib.pipeline`.
"""
