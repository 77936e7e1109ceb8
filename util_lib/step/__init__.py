"""What a step imports: its tracked run (:mod:`~util_lib.step.run`), argument reading, logging,
datasets, figures, scores, the data contract (:mod:`~util_lib.step.contract`, with the command
that writes one from a file, ``python -m util_lib.step.contract infer``), the record of what it
ran on, its quick exit, and the launcher that every step's MLproject command runs
(:mod:`~util_lib.step.launcher`).

Imported by every step, by serving and the notebooks; never by an exported model. It may use
the artifact store (:mod:`util_lib.artifacts`) and the leaves, never the driver's
:mod:`util_lib.pipeline`.
"""
