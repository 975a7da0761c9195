"""Every reason the sidecar's status table sends is one each client maps: a reason added to the sidecar without
a client learning it would silently fall back to mapping by code."""

from __future__ import annotations

import re

import pytest

from tests.support.sidecar_process import ROOT
from tollgate.grpc import status as sidecar_status
from tollgate_client import _errors

REASONS = {reason for _, reason in sidecar_status.STATUS.values()} | {"INTERNAL"}


def test_the_python_client_maps_every_reason() -> None:
    assert set(_errors._BY_REASON) == REASONS


@pytest.mark.parametrize(
    ("source", "table"),
    [
        # The Node.js client: the BUDGET_EXCEEDED constant and the BY_REASON map.
        ("clients/node/src/errors.js", r'(?:const BUDGET_EXCEEDED = |\[)"([A-Z_]+)"'),
        # The Go client: the Reason constants.
        ("clients/go/errors.go", r'\bReason\w+\s*=\s*"([A-Z_]+)"'),
    ],
)
def test_the_other_clients_know_every_reason(source: str, table: str) -> None:
    known = set(re.findall(table, (ROOT / source).read_text()))
    assert known == REASONS, f"{source}: missing {sorted(REASONS - known)}, not sent {sorted(known - REASONS)}"
