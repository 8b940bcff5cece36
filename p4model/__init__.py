"""p4model: a faithful Python execution of p4src/loadbalancer.p4 with BMv2's semantics."""

from p4model.errors import SwitchError
from p4model.switch import Switch
from p4src.contract import Digest, Settings, load_settings

__all__ = ["Digest", "Settings", "Switch", "SwitchError", "load_settings"]
