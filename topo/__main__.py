"""``python -m topo``: the demo (same as ``p4lb-demo``)."""

import sys

from topo.demo import main

sys.exit(main())
