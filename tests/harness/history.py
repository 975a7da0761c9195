"""What every caller asked, and what it was told.

One ``Call`` per RPC a caller sent (or tried to send), with its outcome:

- ``ok``: answered; ``rid``/``held``/``charged`` say what the caller was told;
- ``error``: a definite refusal (``code`` and ``message`` from the sidecar);
- ``unknown``: the answer was lost (deadline, connection, or the sidecar's own
  ``UNAVAILABLE`` when the store did not answer in time): the call may or may not
  have taken effect;
- ``unsent``: the client refused the arguments before sending anything.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFINITE", "OK", "UNKNOWN", "Call", "History"]

OK, ERROR, UNKNOWN, UNSENT = "ok", "error", "unknown", "unsent"

DEFINITE = frozenset({
    "INVALID_ARGUMENT", "PERMISSION_DENIED", "NOT_FOUND", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "OUT_OF_RANGE", "UNAUTHENTICATED", "ALREADY_EXISTS",
})
"""Codes that say the call was refused: it must have changed nothing."""

# Words of the sidecar's own UNAVAILABLE answers (the store did not answer, or the
# fail-open allowance is spent), as opposed to a transport failure.
_STORE_WORDS = ("store", "redis", "allowance")


@dataclass(slots=True)
class Call:
    index: int
    intent: int
    caller: str
    """The caller task, e.g. ``acme-eu-app#3``."""
    tenant: str
    """The configured caller (token) it used."""
    op: str
    """reserve | route | commit | release | extend."""
    sidecar: int
    key: str
    args: dict[str, Any]
    deadline: float
    invoked_at: float
    completed_at: float = 0.0
    outcome: str = ""
    code: str = ""
    message: str = ""
    rid: str = ""
    """Reserve/Route: the id the caller was told (when ok). Commit/Release/Extend: the id sent."""
    held: int = 0
    charged: int = 0
    replayed: bool = False
    model: str = ""
    pools_told: int = -1
    """How many pool states came with the answer (a fail-open local admission sends none)."""
    client_retry: bool = False
    """Sent through a client with its own retry policy: one call may be several attempts."""
    attempts: int = 1
    """Attempts the client made, as its exception said (1 when unknown)."""

    @property
    def ok(self) -> bool:
        return self.outcome == OK

    @property
    def definite(self) -> bool:
        return self.outcome in (ERROR, UNSENT)

    @property
    def unknown(self) -> bool:
        return self.outcome == UNKNOWN

    @property
    def sidecar_unavailable(self) -> bool:
        """The sidecar itself answered UNAVAILABLE (its store did not answer): not a lost connection."""
        text = self.message.lower()
        return self.code == "UNAVAILABLE" and any(w in text for w in _STORE_WORDS)

    def render(self, t0: float) -> str:
        what = {
            OK: f"ok rid={self.rid}" + (f" held={self.held}" if self.op in ("reserve", "route") else "")
            + (f" charged={self.charged}" if self.op == "commit" else "") + (" replayed" if self.replayed else ""),
            ERROR: f"{self.code}: {self.message[:160]}",
            UNKNOWN: f"unknown {self.code}: {self.message[:160]}",
            UNSENT: f"not sent: {self.message[:120]}",
        }.get(self.outcome, self.outcome)
        target = f" rid={self.rid}" if self.op in ("commit", "release", "extend") else ""
        args = " ".join(f"{k}={v}" for k, v in self.args.items())
        retry = f" client-retry(attempts={self.attempts})" if self.client_retry else ""
        return (f"#{self.index} +{self.invoked_at - t0:.3f}s..+{self.completed_at - t0:.3f}s {self.caller} "
                f"{self.op} sidecar={self.sidecar}{target} key={self.key or '-'} deadline={self.deadline}s{retry} "
                f"[{args}] -> {what}")


@dataclass(slots=True)
class History:
    t0: float = field(default_factory=time.time)
    calls: list[Call] = field(default_factory=list)

    def begin(self, **fields: Any) -> Call:
        call = Call(index=len(self.calls), invoked_at=time.time(), **fields)
        self.calls.append(call)
        return call

    def by_intent(self) -> dict[int, list[Call]]:
        out: dict[int, list[Call]] = defaultdict(list)
        for call in self.calls:
            out[call.intent].append(call)
        return out

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for call in self.calls:
            out[{OK: OK, ERROR: call.code, UNKNOWN: f"lost:{call.code}"}.get(call.outcome, call.outcome)] += 1
        return dict(out)
