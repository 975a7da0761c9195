"""The caller's-view harness: real sidecars and stores under injected faults, checked against what callers were told.

Callers (``workload``) reserve, route, commit, release and abandon through the Python
client, as applications do, in several tenants; a nemesis (``nemesis``) stalls and
kills Redis, kills and stops sidecars, and delays, stalls and cuts the sidecars'
connections to Redis (``proxy``); every call and its answer goes into a history
(``history``). Once the faults are healed and every hold has expired or ended, the
checker (``checker``) reads the store directly (``store``) and compares it with the
history. Everything random derives from the seed, so a failing seed replays.

``python -m tests.harness --seeds 1-20 --store redis,sqlite --ops 2000``
"""

from __future__ import annotations

import sys
from pathlib import Path

_SIDECAR = str(Path(__file__).resolve().parents[2] / "sidecar")
if _SIDECAR not in sys.path:
    sys.path.insert(0, _SIDECAR)
