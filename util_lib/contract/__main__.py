"""``python -m util_lib.contract infer FILE --target COLUMN --name NAME``."""

from util_lib.contract.cli import main

if __name__ == "__main__":
    main()
