"""`python -m p4model`: the same as `p4lb-switch`."""

import sys

from p4model.server import main

sys.exit(main())
