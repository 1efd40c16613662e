"""``python -m gsreg.cli``: the ``gsreg`` command."""

import sys

from . import main

sys.exit(main())
