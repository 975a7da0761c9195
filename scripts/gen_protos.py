"""Regenerate the Python protobuf and gRPC code from ``proto/``.

The generated modules are committed, in the client package that every Python
user of the contract installs (the sidecar imports them from there too, so one
process never registers the same descriptors twice). CI runs this script and
fails if the tree changes.

protoc writes ``from tollgate.v1 import tollgate_pb2`` into the gRPC module;
the only rewrite made here turns that into a relative import, because the
modules live under ``tollgate_client.v1`` rather than a top-level ``tollgate``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT = ROOT / "clients" / "python" / "tollgate_client" / "v1"


def generate() -> dict[str, str]:
    """The generated files, by name, as they belong in ``OUT``."""
    protos = sorted(PROTO_ROOT.glob("tollgate/v1/*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"--python_out={tmp}",
                f"--grpc_python_out={tmp}",
                f"--pyi_out={tmp}",
                *[str(p.relative_to(PROTO_ROOT)) for p in protos],
            ],
            check=True,
        )
        generated = Path(tmp) / "tollgate" / "v1"
        return {
            path.name: path.read_text().replace("from tollgate.v1 import ", "from . import ")
            for path in sorted(generated.iterdir())
        }


def main() -> int:
    files = generate()
    if "--check" in sys.argv[1:]:
        stale = sorted(
            name for name, text in files.items() if not (OUT / name).exists() or (OUT / name).read_text() != text
        )
        if stale:
            print(f"generated code is out of date ({', '.join(stale)}): run `make proto`", file=sys.stderr)
            return 1
        print("generated code is up to date")
        return 0
    for stale in OUT.glob("*_pb2*.py*"):
        stale.unlink()
    for name, text in files.items():
        (OUT / name).write_text(text)
    init = OUT / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated protobuf and gRPC modules for tollgate.v1."""\n')
    shutil.rmtree(OUT / "__pycache__", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
