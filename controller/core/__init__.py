"""The controller's pure core: decisions from inputs and `now`; no I/O, no clock, no Twisted."""
