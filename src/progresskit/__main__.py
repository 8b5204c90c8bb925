"""``python -m progresskit``."""

import sys

from progresskit.cli import main

sys.exit(main())
