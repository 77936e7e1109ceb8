"""What only the pipeline's driver runs (main.py, and a sweep's Hydra callback): the step loop
(:mod:`~util_lib.pipeline.runner`), the step graph of pipeline.yaml, the configuration's
checks, the step cache, the fork server and tracking server the driver starts for its steps,
sweeps, and what the driver prints.

Imported by main.py and the tests, never by a step, serving or an exported model: an edit
here reruns no step (the step cache follows the files a step loaded).
"""
