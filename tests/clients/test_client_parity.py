"""The README's table of what each client offers holds: every name it gives for a client exists in that client.

Python names are looked up in ``tollgate_client`` (a class's method, field or, for a TypedDict, key). Node.js
names are looked up in the package as Node imports it, else, for types, among the declarations of index.d.ts (a
member of a declared type or interface). Go names are looked up in ``go doc -all`` of the module: a function, a
method, a type or a constant. A cell of "—" claims nothing; every other cell must name something.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, get_type_hints

import pytest

import tollgate_client
from tests.support.sidecar_process import ROOT

from .go.test_go_client import GO_CLIENT, _go_env
from .node.conftest import NODE_DIR, node, node_modules

__all__ = ["node", "node_modules"]

README = ROOT / "README.md"
HEADING = "### What each client offers"
CLIENTS = ("Python", "Node.js", "Go")
CAPABILITIES = {
    "route, and reserve in the same round trip", "reserve", "commit", "release", "extend", "budget", "escalate",
    "feedback and the quality report", "shadow calls: sample, compare, report", "latency class",
    "typed errors, by the sidecar's reason", "retries, with idempotency keys",
}
"""What every client must offer, whatever else the table lists."""


def _table() -> dict[str, dict[str, list[str]]]:
    """The table under the heading: by capability, by client, the names its cell gives."""
    text = README.read_text()
    assert HEADING in text, f"README.md has no {HEADING!r} section"
    lines = text.split(HEADING, 1)[1].splitlines()
    rows = [line for line in lines[: next(i for i, line in enumerate(lines) if line.startswith("## "))]
            if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert [h.split(" (")[0] for h in header] == ["capability", *CLIENTS], header
    table: dict[str, dict[str, list[str]]] = {}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == len(header), row
        table[cells[0]] = {
            client: re.findall(r"`([^`]+)`", cell) if not cell.startswith("—") else []
            for client, cell in zip(CLIENTS, cells[1:], strict=True)
        }
    return table


def test_the_table_lists_every_capability_for_every_client() -> None:
    table = _table()
    assert set(table) >= CAPABILITIES, CAPABILITIES - set(table)
    for capability in CAPABILITIES:
        for client, names in table[capability].items():
            assert names, f"{client} has nothing for {capability!r}"


def _python_has(name: str) -> bool:
    target: Any = tollgate_client
    for part in name.split("."):
        if hasattr(target, part):
            target = getattr(target, part)
        elif isinstance(target, type) and part in get_type_hints(target):
            return part == name.split(".")[-1]
        else:
            return False
    return True


def test_every_python_name_exists() -> None:
    missing = [(cap, name) for cap, cells in _table().items() for name in cells["Python"] if not _python_has(name)]
    assert not missing, f"named in README.md but not in tollgate_client: {missing}"


def _declared_member(declarations: str, owner: str, member: str) -> bool:
    """Whether index.d.ts declares ``owner`` (type, interface or class) with a member ``member``."""
    match = re.search(rf"^export (?:declare )?(?:type|interface|class) {owner}\b.*?^}}", declarations,
                      re.MULTILINE | re.DOTALL)
    return match is not None and re.search(rf"^\s+(?:readonly )?{member}\??[:(<]", match.group(0),
                                           re.MULTILINE) is not None


def test_every_node_name_exists(node: str, node_modules: Path) -> None:
    names = sorted({name for cells in _table().values() for name in cells["Node.js"]})
    script = (
        'const m = await import("./src/index.js");'
        f"const names = {json.dumps(names)};"
        "const step = (o, k) => (o == null ? undefined : k in o ? o[k] : o.prototype?.[k]);"
        "const at = (n) => n.split('.').reduce(step, m);"
        "console.log(JSON.stringify(names.filter((n) => at(n) === undefined)));"
    )
    result = subprocess.run([node, "--input-type=module", "-e", script], cwd=NODE_DIR, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    declarations = (NODE_DIR / "index.d.ts").read_text()
    missing = [name for name in json.loads(result.stdout)
               if "." not in name or not _declared_member(declarations, *name.split(".", 1))]
    assert not missing, f"named in README.md but not in @tollgate/client: {missing}"


def test_every_go_name_exists() -> None:
    go = shutil.which("go")
    if go is None:
        pytest.fail("the Go client tests need go on PATH (Go 1.21 or later)", pytrace=False)

    def doc_of(folder: Path) -> str:
        doc = subprocess.run([go, "doc", "-all", "."], cwd=folder, env=_go_env(), capture_output=True, text=True,
                             timeout=600)
        assert doc.returncode == 0, doc.stderr
        return doc.stdout

    # The provider wrapper is a module of its own (openai-go needs a newer Go): its names are openaigate.X.
    docs = {"": doc_of(GO_CLIENT), "openaigate.": doc_of(GO_CLIENT / "openaigate")}

    def has(qualified: str) -> bool:
        package = "openaigate." if qualified.startswith("openaigate.") else ""
        name, text = qualified.removeprefix(package), docs[package]
        if "." in name:
            owner, method = name.split(".", 1)
            return re.search(rf"^func \(\w+ \*?{owner}\) {method}\(", text, re.MULTILINE) is not None
        return re.search(rf"^(?:func|type) {name}\b|^\t{name}\s+=", text, re.MULTILINE) is not None

    missing = [name for cells in _table().values() for name in cells["Go"] if not has(name)]
    assert not missing, f"named in README.md but not in the Go client: {missing}"
