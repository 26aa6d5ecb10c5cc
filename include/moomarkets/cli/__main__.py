"""``python -m moomarkets.cli``."""

import sys

from moomarkets.cli import main

sys.exit(main())
