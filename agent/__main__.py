"""`python -m agent` runs p4lb-agent."""

import sys

from agent.cli import main

sys.exit(main())
