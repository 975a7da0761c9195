"""The engine of the provider SDK wrappers (``tollgate_client.openai``, ``tollgate_client.anthropic``).

Only what an application sees is exported here: the streams the wrappers hand back, the
outcome of a call, and the errors they raise.
"""

from .common import (
    AttemptOutcome,
    CallOutcome,
    CheckFailedError,
    MissingProviderClientError,
    Settlement,
)
from .engine import Check, OutcomeHook
from .streams import AsyncGatedStream, GatedStream

__all__ = [
    "AsyncGatedStream",
    "AttemptOutcome",
    "CallOutcome",
    "Check",
    "CheckFailedError",
    "GatedStream",
    "MissingProviderClientError",
    "OutcomeHook",
    "Settlement",
]
