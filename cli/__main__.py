"""``python -m acf.cli`` is ``acfc``."""

import sys

from acf.cli import main

sys.exit(main())
