"""Load-aware weights for p4lb: policies (load -> shares), quantisation (shares -> integer
weights), prefix-compressed buckets (weights -> LPM entries) and autoscaling. Pure numpy: no I/O,
no clock (time is an argument), and nothing else of ours is imported.
"""

from policy.base import Observations, Policy, PolicyError
from policy.quantize import quantize
from policy.registry import DEFAULT_POLICY, PARAMS, POLICIES, make_policy, policy_params
from policy.spans import ReportSpans

__all__ = [
    "DEFAULT_POLICY",
    "PARAMS",
    "POLICIES",
    "Observations",
    "Policy",
    "PolicyError",
    "ReportSpans",
    "make_policy",
    "policy_params",
    "quantize",
]
