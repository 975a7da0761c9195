"""The application: the request lifecycle over the domain, knowing nothing of gRPC.

``Tollgate`` (``facade.py``) is the entry point; ``limits`` checks requests, the
``Planner`` turns them into candidates, ``Admission`` holds their cost, and the
``Runtime`` snapshot carries the config they all read, swapped whole on reload.
"""

from .facade import Tollgate
from .runtime import AuditLog, Runtime
from .types import Escalation, Outcome, Prompt, ReserveResult, RouteDecision, Usage

__all__ = ["AuditLog", "Escalation", "Outcome", "Prompt", "ReserveResult", "RouteDecision", "Runtime", "Tollgate",
           "Usage"]
