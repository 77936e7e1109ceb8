"""Names of the MLflow tags that more than one module reads or writes, named once.

A pipeline run (main.py) records, for each step, the run that did its work, its own or a cached
one (util_lib/step_cache.py), and how it ended; the sweep report and the lineage read them.
"""

from __future__ import annotations

STEP_RUN_PREFIX = "util_lib.step_run."  # + step name: the run id
STEP_STATUS_PREFIX = "util_lib.step_status."  # + step name: FINISHED, CACHED or FAILED
