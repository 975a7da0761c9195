"""Tests of the tollgate_client package against an in-process fake sidecar."""
