"""The Node.js client installed as an application installs it, from outside the repository, and its README example
run against a live sidecar.

Scratch npm apps in a temporary directory run the README's install lines as written, with the path of a copy of
the client's folder as a fresh checkout has it (no node_modules): one installs the folder, one the tarball
``npm pack`` makes of it. Each then runs the README example; the tarball's app also type-checks the example, and
every export the declarations name, with TypeScript 5 (``tsc --noEmit``, strict, library checks on). The example
imports ``openai``; a stand-in package answers like Chat Completions.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sidecar_process import ROOT, SidecarProcess

from ..readme_example import PROVIDER_USAGE, assert_settled, nanos, readme_block, sidecar, with_target

__all__ = ["sidecar"]

CLIENT = ROOT / "clients" / "node"
README = CLIENT / "README.md"
PACKAGE = "@tollgate/client"
TIMEOUT = 600
TYPESCRIPT = "typescript@5"

OPENAI_STAND_IN = {
    "package.json": json.dumps({"name": "openai", "version": "0.0.0", "type": "module", "main": "index.js",
                                "types": "index.d.ts"}),
    "index.js": f"""// A stand-in for the OpenAI SDK: Chat Completions that answer at once and report fixed usage.
export default class OpenAI {{
  chat = {{
    completions: {{
      create: async ({{ model }}) => ({{
        model,
        choices: [{{ message: {{ role: "assistant", content: "ok" }} }}],
        usage: {json.dumps(PROVIDER_USAGE)},
      }}),
    }},
  }};
}}
""",
    "index.d.ts": """export interface ChatCompletion {
  model: string;
  choices: { message: { role: string; content: string } }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}
export default class OpenAI {
  chat: {
    completions: {
      create(body: { model: string; messages: { role: string; content: string }[] }): Promise<ChatCompletion>;
    };
  };
}
""",
}

TSCONFIG = {
    "compilerOptions": {"module": "nodenext", "moduleResolution": "nodenext", "target": "es2022", "strict": True,
                        "noEmit": True, "skipLibCheck": False, "types": ["node"]},
    "files": ["example.ts", "exports.ts"],
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: the Node.js client's tests need Node.js >= 18 and npm", pytrace=False)
    return path


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    if args[0] in ("npm", "node", "npx"):
        args = [_tool(args[0]), *args[1:]]
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f"$ {shlex.join(args)}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def _install_lines(checkout_root: Path) -> list[list[list[str]]]:
    """The README's install lines, each a list of commands, with the checkout's path in place of the README's."""
    lines = []
    for line in readme_block(README, "sh", "npm install").splitlines():
        command = line.split("#", 1)[0].strip().replace("/path/to/tollgate", str(checkout_root))
        if command:
            lines.append([shlex.split(part) for part in command.split("&&")])
    return lines


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's client folder as a fresh checkout has it; returns the checkout's root."""
    root = tmp_path_factory.mktemp("checkout") / "tollgate"
    shutil.copytree(CLIENT, root / "clients" / "node", ignore=shutil.ignore_patterns("node_modules", "*.tgz"))
    return root


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Path]:
    """An empty npm application of ES modules."""
    (tmp_path / "package.json").write_text(json.dumps({"name": "scratch-app", "version": "1.0.0", "private": True,
                                                       "type": "module"}))
    yield tmp_path


def _add_openai_stand_in(app: Path) -> None:
    folder = app / "node_modules" / "openai"
    folder.mkdir(parents=True)
    for name, text in OPENAI_STAND_IN.items():
        (folder / name).write_text(text)


def _run_example(app: Path, sidecar: SidecarProcess) -> tuple[str, int]:
    """Runs the README example in ``app``; returns the model it printed and what it said was charged."""
    code = readme_block(README, "js", 'from "openai"')
    (app / "example.js").write_text(with_target(code, sidecar.target))
    out = _run(["node", "example.js"], cwd=app).stdout.split()
    assert len(out) >= 3 and out[-1].startswith("$"), out
    return out[0], nanos(out[-1])


def _installed(app: Path) -> Path:
    installed = app / "node_modules" / "@tollgate" / "client"
    assert installed.is_dir() and not installed.is_symlink(), "the client was linked, not installed"
    for dependency in ("@grpc/grpc-js", "@grpc/proto-loader", "protobufjs"):
        assert (app / "node_modules" / dependency / "package.json").is_file(), f"{dependency} was not installed"
    assert (installed / "proto" / "tollgate" / "v1" / "tollgate.proto").is_file()
    return installed


def test_the_readme_installs_the_folder_and_the_tarball(checkout: Path) -> None:
    lines = _install_lines(checkout)
    assert [len(line) for line in lines] == [1, 2], lines
    assert lines[0][0][:3] == ["npm", "install", "--install-links"]
    assert lines[1][0][:2] == ["npm", "pack"] and lines[1][1][:2] == ["npm", "install"]


def test_npm_install_of_the_folder_runs_the_readme_example(app: Path, checkout: Path,
                                                           sidecar: SidecarProcess) -> None:
    (folder_install,) = _install_lines(checkout)[0]
    _run([*folder_install, "--no-audit", "--no-fund"], cwd=app)
    _installed(app)
    _add_openai_stand_in(app)
    model, charged = _run_example(app, sidecar)
    assert model
    assert_settled(sidecar, charged)


def test_the_packed_tarball_runs_and_type_checks_the_readme_example(app: Path, checkout: Path,
                                                                    sidecar: SidecarProcess) -> None:
    pack, install = _install_lines(checkout)[1]
    _run(pack, cwd=app)
    tarball = install[-1]
    assert (app / tarball).is_file(), f"npm pack did not write {tarball}"
    packed = _run(["tar", "-tzf", tarball], cwd=app).stdout.split()
    assert "package/proto/tollgate/v1/tollgate.proto" in packed and "package/index.d.ts" in packed, packed
    assert not [name for name in packed if name.startswith(("package/test/", "package/node_modules/"))], packed
    _run([*install, "--no-audit", "--no-fund"], cwd=app)
    _installed(app)
    _run(["npm", "install", "--no-save", "--no-audit", "--no-fund", TYPESCRIPT], cwd=app)
    _add_openai_stand_in(app)
    model, charged = _run_example(app, sidecar)
    assert model
    assert_settled(sidecar, charged)

    declared = _declared_values()
    runtime = json.loads(_run(["node", "--input-type=module", "-e",
                               f'import * as m from "{PACKAGE}"; console.log(JSON.stringify(Object.keys(m)))'],
                              cwd=app).stdout)
    assert sorted(runtime) == declared, "index.d.ts and the package's exports differ"
    (app / "example.ts").write_text((app / "example.js").read_text())
    (app / "exports.ts").write_text(_every_export(declared))
    (app / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    result = subprocess.run([_tool("npx"), "--no-install", "tsc", "-p", "."], cwd=app, capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f"tsc found errors:\n{result.stdout}\n{result.stderr}"


def _declared_values() -> list[str]:
    """The value exports index.d.ts declares, sorted."""
    declared = re.findall(r"^export declare (?:const|function|class|abstract class) (\w+)",
                          (CLIENT / "index.d.ts").read_text(), re.MULTILINE)
    assert len(declared) > 10, declared
    return sorted(set(declared))


def _every_export(names: list[str]) -> str:
    """TypeScript that takes each value export of the package by name: a declaration that does not type fails."""
    return (f'import * as everything from "{PACKAGE}";\nconst {{ {", ".join(names)} }} = everything;\n'
            + "".join(f"void {name};\n" for name in names))
