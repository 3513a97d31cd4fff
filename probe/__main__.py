"""`python -m probe` runs the sidecar, like `kata-probe`."""

import sys

from probe.cli import main

sys.exit(main())
