"""`python -m advlab.cli`: the command line."""

import sys

from advlab.cli import main

sys.exit(main())
