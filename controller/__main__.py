"""`python -m controller` runs p4lb-controller."""

import sys

from controller.cli import main

sys.exit(main())
