"""`python -m controller` runs p4lb-controller."""

import sys

from controller.shell.cli import main

sys.exit(main())
