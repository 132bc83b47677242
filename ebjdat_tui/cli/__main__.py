"""`python -m ebjdat_tui.cli`: the `ebjdat` command line (how tests, the TUI's launcher and
`ebjdat study` start it with a given interpreter)."""

import sys

from . import main

sys.exit(main())
