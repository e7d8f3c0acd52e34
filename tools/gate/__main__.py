"""``python -m tools.gate``: see tools/gate/gate.py."""

import sys

from .gate import main

sys.exit(main())
