"""`python -m l2o` (and `torchrun -m l2o`) run the `l2o` command line."""

import sys

from .cli import main

sys.exit(main())
