"""``python -m progresskit``."""

import sys

from progresskit.cli.main import main

sys.exit(main())
