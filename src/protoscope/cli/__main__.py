"""`python -m protoscope.cli`: the same as the installed `protoscope` command."""

import sys

from . import main

sys.exit(main())
