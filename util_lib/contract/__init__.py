"""A data contract from the data: ``python -m util_lib.contract infer FILE --target COLUMN
--name NAME`` writes ``conf/dataset/NAME.yaml`` (:mod:`util_lib.contract.infer`), for the user
to read and edit, then ``dataset=NAME`` runs the pipeline on that table."""
