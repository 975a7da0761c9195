"""Tollgate: a budget-aware model router that runs as a gRPC sidecar."""

__version__ = "0.1.0"
