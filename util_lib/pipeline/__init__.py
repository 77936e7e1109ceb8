"""What only the pipeline's driver runs (main.py, and a sweep's Hydra callback): the step loop
(:mod:`~util_lib.pipeline.runner`; a step launched by :mod:`~util_lib.pipeline.launch`, the
pipeline ended early by :mod:`~util_lib.pipeline.stopping`), the step graph of pipeline.yaml,
the configuration's checks, the step cache, the fork server and tracking server the driver
starts for its steps, sweeps and their report (:mod:`~util_lib.pipeline.sweep_report`, its
rows and files in ``sweep_jobs`` and ``sweep_files``), and what the driver prints.

Imported by main.py and the tests, never by a step, serving or an exported model: an edit
here reruns no step (the step cache follows the files a step loaded).
"""
