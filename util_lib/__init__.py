"""Shared code of the pipeline: tracking and artifacts, logging, custom transformers.

Submodules are imported on use so that a step pays only for what it needs
(``import util_lib`` alone imports neither MLflow nor W&B).
"""
