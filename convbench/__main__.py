"""`python -m convbench`: the same command as the `convbench` script."""
import sys

from convbench.cli import main

sys.exit(main())
