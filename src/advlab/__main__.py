"""`python -m advlab` (and `torchrun -m advlab`): the command line."""

import sys

from advlab.cli import main

sys.exit(main())
