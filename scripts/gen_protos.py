"""Regenerate the Python and Go protobuf and gRPC code from ``proto/``.

Both are committed: the Python modules in the client package that every
Python user of the contract installs (the sidecar imports them from there too,
so one process never registers the same descriptors twice), the Go stubs in
``clients/go/tollgatev1``, since Go never runs ``go generate`` for a dependency.
The Node.js client loads the proto itself at run time: a copy of it is kept
inside the package (``clients/node/proto``), so that the package folder and its
tarball are whole. CI runs ``--check`` and fails if the generated code (or the
copy) is not what the tree holds.

The Python modules come from grpcio-tools at the pinned ``GRPCIO_TOOLS``, run
from an environment of its own (created once under ``.venv/``), never from the
environment that runs this script: generated code demands a runtime at least as
new as its generator (the protobuf modules check it at import time, the gRPC
module too), so the generator's version is the floor of the client's
``grpcio`` and ``protobuf`` requirements in ``clients/python/pyproject.toml``.
grpcio-tools 1.72.1 is the oldest that writes protobuf 6.x code (6.30.0), the
oldest major that protobuf's newest runtime (7.x) still supports.

protoc writes ``from tollgate.v1 import tollgate_pb2`` into the gRPC module;
the only rewrite made here turns that into a relative import, because the
modules live under ``tollgate_client.v1`` rather than a top-level ``tollgate``.

The Go plugins are built at the pinned versions below with ``go install`` from
the module proxy into a temporary GOBIN (Go's build cache keeps that quick),
and run by ``protoc`` from PATH, else grpcio-tools' protoc. The protoc version
stamped into the Go files' headers is left out of the comparison, so the check
holds on machines with another protoc. Without ``go`` on PATH the Go stubs are
skipped with a notice.

    gen_protos.py [--check] [--go | --python]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT = ROOT / "clients" / "python" / "tollgate_client" / "v1"
NODE_OUT = ROOT / "clients" / "node" / "proto" / "tollgate" / "v1"
# Keep in step with the floors in clients/python/pyproject.toml: grpcio>=1.72.1, protobuf>=6.30.0.
GRPCIO_TOOLS = "1.72.1"
TOOLS_ENV = ROOT / ".venv" / f"grpcio-tools-{GRPCIO_TOOLS}"
GO_OUT = ROOT / "clients" / "go" / "tollgatev1"
GO_MODULE = "github.com/tollgate/tollgate/clients/go"
# Keep in step with clients/go/go.mod: protoc-gen-go at the google.golang.org/protobuf version, and a
# protoc-gen-go-grpc whose output the required google.golang.org/grpc supports.
GO_PLUGINS = {
    "protoc-gen-go": "google.golang.org/protobuf/cmd/protoc-gen-go@v1.34.2",
    "protoc-gen-go-grpc": "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1",
}
# "// \tprotoc        v3.21.12" (protoc-gen-go) and "// - protoc             v3.21.12" (protoc-gen-go-grpc).
PROTOC_VERSION_LINE = re.compile(r"^// (?:\t|- )protoc +\S+$", re.MULTILINE)


@dataclass(frozen=True)
class Target:
    """Generated files, by name, and the directory and file pattern they own."""

    name: str
    out: Path
    pattern: str
    files: dict[str, str]


def _protos() -> list[str]:
    return [str(p.relative_to(PROTO_ROOT)) for p in sorted(PROTO_ROOT.glob("tollgate/v1/*.proto"))]


def tools_python() -> str:
    """The interpreter of the environment that holds grpcio-tools at ``GRPCIO_TOOLS``, made on first use."""
    python = TOOLS_ENV / "bin" / "python"
    stamp = TOOLS_ENV / ".installed"
    if not stamp.exists():
        shutil.rmtree(TOOLS_ENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS_ENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"grpcio-tools=={GRPCIO_TOOLS}"], check=True)
        stamp.write_text(GRPCIO_TOOLS + "\n")
    return str(python)


def generate() -> dict[str, str]:
    """The generated Python files, by name, as they belong in ``OUT``."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                tools_python(),
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"--python_out={tmp}",
                f"--grpc_python_out={tmp}",
                f"--pyi_out={tmp}",
                *_protos(),
            ],
            check=True,
        )
        generated = Path(tmp) / "tollgate" / "v1"
        return {
            path.name: path.read_text().replace("from tollgate.v1 import ", "from . import ")
            for path in sorted(generated.iterdir())
        }


def _go_env(gobin: Path) -> dict[str, str]:
    # `go install pkg@version` ignores any module around it, and refuses -mod=vendor.
    flags = [flag for flag in os.environ.get("GOFLAGS", "").split() if not flag.startswith("-mod=")]
    return dict(os.environ, GOBIN=str(gobin), GOFLAGS=" ".join(flags))


def generate_go() -> dict[str, str] | None:
    """The generated Go files, by name, as they belong in ``GO_OUT``; None without ``go`` on PATH."""
    go = shutil.which("go")
    if go is None:
        return None
    protoc = shutil.which("protoc")
    command = [protoc] if protoc else [tools_python(), "-m", "grpc_tools.protoc"]
    with tempfile.TemporaryDirectory() as tmp:
        gobin, out = Path(tmp) / "bin", Path(tmp) / "out"
        out.mkdir()
        env = _go_env(gobin)
        for package in GO_PLUGINS.values():
            subprocess.run([go, "install", package], cwd=tmp, env=env, check=True)
        options: list[str] = []
        for proto in _protos():
            options += [f"M{proto}={GO_MODULE}/tollgatev1"]
        options.append(f"module={GO_MODULE}")
        subprocess.run(
            [
                *command,
                f"-I{PROTO_ROOT}",
                f"--plugin=protoc-gen-go={gobin / 'protoc-gen-go'}",
                f"--plugin=protoc-gen-go-grpc={gobin / 'protoc-gen-go-grpc'}",
                f"--go_out={out}",
                f"--go-grpc_out={out}",
                *[f"--go_opt={option}" for option in options],
                *[f"--go-grpc_opt={option}" for option in options],
                *_protos(),
            ],
            check=True,
        )
        return {path.name: path.read_text() for path in sorted((out / "tollgatev1").iterdir())}


def node_proto() -> dict[str, str]:
    """The Node.js package's copy of the proto, as it belongs in ``NODE_OUT``."""
    return {name: (PROTO_ROOT / "tollgate" / "v1" / name).read_text() for name in
            sorted(p.name for p in (PROTO_ROOT / "tollgate" / "v1").glob("*.proto"))}


def _comparable(name: str, text: str) -> str:
    return PROTOC_VERSION_LINE.sub("// protoc", text) if name.endswith(".go") else text


def _stale(target: Target) -> list[str]:
    stale = [
        name
        for name, text in target.files.items()
        if not (target.out / name).exists()
        or _comparable(name, (target.out / name).read_text()) != _comparable(name, text)
    ]
    stale += [path.name for path in target.out.glob(target.pattern) if path.name not in target.files]
    return sorted(stale)


def _write(target: Target) -> None:
    target.out.mkdir(parents=True, exist_ok=True)
    for stale in target.out.glob(target.pattern):
        stale.unlink()
    for name, text in target.files.items():
        (target.out / name).write_text(text)


def main() -> int:
    args = sys.argv[1:]
    targets: list[Target] = []
    if "--go" not in args:
        targets.append(Target("Python", OUT, "*_pb2*.py*", generate()))
    if "--go" not in args and "--python" not in args:
        targets.append(Target("Node.js", NODE_OUT, "*.proto", node_proto()))
    if "--python" not in args:
        go_files = generate_go()
        if go_files is None:
            print("`go` is not on PATH: the Go stubs in clients/go/tollgatev1 were left alone", file=sys.stderr)
        else:
            targets.append(Target("Go", GO_OUT, "*.pb.go", go_files))
    if "--check" in args:
        failed = False
        for target in targets:
            stale = _stale(target)
            if stale:
                failed = True
                print(f"generated {target.name} code is out of date ({', '.join(stale)}): run `make proto`",
                      file=sys.stderr)
            else:
                print(f"generated {target.name} code is up to date")
        return 1 if failed else 0
    for target in targets:
        _write(target)
        if target.out == OUT:
            init = OUT / "__init__.py"
            if not init.exists():
                init.write_text('"""Generated protobuf and gRPC modules for tollgate.v1."""\n')
            shutil.rmtree(OUT / "__pycache__", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
