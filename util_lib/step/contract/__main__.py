"""``python -m util_lib.step.contract infer FILE --target COLUMN --name NAME``."""

from util_lib.step.contract.cli import main

if __name__ == "__main__":
    main()
