"""One bench cell in its own process: `python -m autoorg.bench SUITE OUT ORG TASK REPEAT` (bench/cell.py)."""

import sys

from autoorg.bench.cell import main

sys.exit(main(sys.argv[1:]))
