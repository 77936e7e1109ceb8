"""What an exported model bundles (``code/util_lib/model/`` beside ``util_lib/__init__.py``):
the custom transformers its pipeline is made of (``transformers.py``) and its
``python_function`` flavor (``pyfunc.py``), with the input domain it checks requests against
(``input_domain.py``) and the safe loader of its fitted pipeline (``safe_load.py``). The export
bundles every file of this folder.

Imported by the model wherever it loads (``mlflow models serve``, ``python -m serving``, the
evaluate step), by the train step that builds and exports it, and by nothing else of util_lib:
it imports nothing of util_lib outside this folder, so that the model loads with this
repository out of reach.
"""
