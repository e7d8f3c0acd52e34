import sys

from ganbench.cli import main

sys.exit(main())
