"""The one exception the model's runtime API and pipeline raise."""

from __future__ import annotations


class SwitchError(Exception):
    """A runtime API call failed (unknown name, bad key, full table, duplicate entry, ...)."""
