"""p4lb's P4 program and its contract module (p4src/contract.py)."""
