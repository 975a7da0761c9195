"""The Dockerfile, checked without a container engine: what it copies exists and is in the
build context, its bases are pinned, the final stage is the venv alone under a fixed
non-root UID that matches the manifests, the entrypoint reads the ConfigMap's mount,
the wheels it installs carry every package file, the tiktoken encoding loads with no
network and no cache directory, and its HEALTHCHECK command works against a sidecar.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.k8s.conftest import K8S
from tests.support.sidecar_process import ROOT, SidecarProcess, free_port, write_config
from tollgate.config import parse_config
from tollgate.estimate import ENCODING_NAME

DOCKERFILE = ROOT / "Dockerfile"
UID = 10001


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "a dangling line continuation"
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def arg_default(name: str) -> str:
    for word, rest in instructions():
        if word == "ARG" and rest.startswith(f"{name}="):
            return rest.split("=", 1)[1]
    raise AssertionError(f"no ARG {name}")


def deployment() -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / "base" / "deployment.yaml").read_text()))


def test_both_stages_start_from_one_pinned_slim_python() -> None:
    image = arg_default("PYTHON_IMAGE")
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+", image), f"{image}: pin the full version"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11" and tuple(map(int, image.split(":")[1].split(".")[:2])) >= (3, 11)
    froms = [stage[0][1] for stage in stages()]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"], "the venv runs only on the base it was built on"
    assert "latest" not in DOCKERFILE.read_text()


def test_the_build_stage_installs_both_wheels_into_a_venv() -> None:
    build = " ".join(rest for word, rest in stages()[0] if word == "RUN")
    assert "python -m venv /opt/tollgate" in build
    assert "pip wheel --no-deps --wheel-dir /wheels ./clients/python ." in build
    assert "pip install /wheels/tollgate_sidecar_client-*.whl /wheels/tollgate_sidecar-*.whl" in build


def test_the_final_stage_holds_the_venv_only() -> None:
    final = stages()[1]
    copies = [rest for word, rest in final if word == "COPY"]
    from_build = [c for c in copies if c.startswith("--from=")]
    assert from_build == ["--from=build /opt/tollgate /opt/tollgate"]
    runs = " ".join(rest for word, rest in final if word == "RUN")
    for tool in ("pip install", "apt-get", "gcc", "build-essential", "curl", "wget"):
        assert tool not in runs, f"the final stage must not install {tool}"


def test_copied_files_exist_and_are_in_the_build_context() -> None:
    included = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.startswith("!")}
    for word, rest in instructions():
        if word != "COPY" or rest.startswith("--from="):
            continue
        *sources, _dest = rest.split()
        for source in sources:
            path = source.rstrip("/")
            assert (ROOT / path).exists(), f"COPY {source}: no such file"
            assert path in included, f"COPY {source}: excluded by .dockerignore"


def test_it_runs_as_the_fixed_non_root_user_of_the_manifests() -> None:
    final = stages()[1]
    (user,) = [rest for word, rest in final if word == "USER"]
    assert user == f"{UID}:{UID}", "numeric, so runAsNonRoot can verify it"
    runs = " ".join(rest for word, rest in final if word == "RUN")
    assert f"groupadd --system --gid {UID} tollgate" in runs
    assert f"--uid {UID} --gid {UID}" in runs
    pod = deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == UID
    assert pod["securityContext"]["fsGroup"] == UID
    # The last USER is the one that runs: nothing after it switches back.
    assert [word for word, _ in final].index("USER") > [word for word, _ in final].index("COPY")


def test_the_entrypoint_serves_the_config_from_the_configmap_mount() -> None:
    (entrypoint,) = [json.loads(rest) for word, rest in stages()[1] if word == "ENTRYPOINT"]
    assert entrypoint[:3] == ["tollgate", "serve", "--config"]
    config_path = PurePosixPath(entrypoint[3])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["tollgate"] == "tollgate.cli:main"
    sidecar = deployment()["spec"]["template"]["spec"]["initContainers"][0]
    mount = {m["name"]: m for m in sidecar["volumeMounts"]}["tollgate-config"]
    assert str(config_path.parent) == mount["mountPath"] and mount["readOnly"] is True
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    assert generator["files"] == [config_path.name]
    # The image's default config is the base's, and it validates.
    assert f"COPY k8s/base/tollgate.yaml {config_path}" in [f"COPY {rest}" for word, rest in stages()[1]
                                                             if word == "COPY"]
    parse_config((K8S / "base" / "tollgate.yaml").read_text(), over_defaults=True)


def test_exposed_ports_are_the_health_and_metrics_ports() -> None:
    config = parse_config((K8S / "base" / "tollgate.yaml").read_text(), over_defaults=True)
    (exposed,) = [rest.split() for word, rest in stages()[1] if word == "EXPOSE"]
    assert sorted(map(int, exposed)) == sorted([config.server.health_port, config.telemetry.metrics_port])


def test_the_encoding_loads_with_no_network_and_no_cache_directory(tmp_path: Path) -> None:
    """What ENV TIKTOKEN_CACHE_DIR="" buys on a read-only root: the file is read in place, nothing written."""
    env_lines = " ".join(rest for word, rest in stages()[1] if word == "ENV")
    assert 'TIKTOKEN_CACHE_DIR=""' in env_lines
    build_check = " ".join(rest for word, rest in stages()[1] if word == "RUN" and "--network=none" in rest)
    assert ENCODING_NAME in build_check
    code = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise OSError('network used')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import tiktoken\n"
        f"assert tiktoken.get_encoding({ENCODING_NAME!r}).encode_ordinary('hello world') == [15339, 1917]\n"
    )
    for cache_env, expect_files in (("", False), (None, True)):
        scratch = tmp_path / ("off" if cache_env == "" else "default")
        scratch.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")}
        env["TMPDIR"] = str(scratch)
        if cache_env is not None:
            env["TIKTOKEN_CACHE_DIR"] = cache_env
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        # Without the variable, tiktoken copies the 1.6 MB file into a temp dir it must be able to write.
        assert any(scratch.rglob("*")) == expect_files


def test_the_healthcheck_command_answers_for_a_live_sidecar(tmp_path: Path) -> None:
    (healthcheck,) = [rest for word, rest in stages()[1] if word == "HEALTHCHECK"]
    options, _, command = healthcheck.partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    base = parse_config((K8S / "base" / "tollgate.yaml").read_text(), over_defaults=True)
    target = f"127.0.0.1:{base.server.health_port}"
    assert target in argv[2]
    health_port = free_port()

    def edit(data: dict[str, Any]) -> None:
        data["server"]["health_port"] = health_port
        data["routing"]["classifier"] = "none"  # routing is not under test here

    code = argv[2].replace(target, f"127.0.0.1:{health_port}")
    config = write_config(tmp_path / "tollgate.yaml", edit)
    with SidecarProcess(tmp_path, config=config):
        assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0
    assert subprocess.run([sys.executable, "-c", code], timeout=30, capture_output=True).returncode == 1


@pytest.mark.slow
def test_the_wheels_carry_every_file_of_the_packages(tmp_path: Path) -> None:
    """The image installs the two wheels only: a file missing from package-data is missing in the pod."""
    # The build stage's context: what the Dockerfile copies, without caches or build leftovers.
    context = tmp_path / "context"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        context.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "sidecar", context / "sidecar", ignore=ignore)
    shutil.copytree(ROOT / "clients" / "python", context / "clients" / "python", ignore=ignore)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--wheel-dir", str(tmp_path / "wheels"), "./clients/python", "."],
        capture_output=True, text=True, timeout=300, cwd=context,
    )
    assert out.returncode == 0, out.stderr
    for wheel_glob, package_dir in (("tollgate_sidecar-*.whl", ROOT / "sidecar" / "tollgate"),
                                    ("tollgate_sidecar_client-*.whl",
                                     ROOT / "clients" / "python" / "tollgate_client")):
        (wheel,) = (tmp_path / "wheels").glob(wheel_glob)
        names = set(zipfile.ZipFile(wheel).namelist())
        files = [p for p in package_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        missing = [str(p.relative_to(package_dir.parent)) for p in files
                   if str(p.relative_to(package_dir.parent)) not in names]
        assert not missing, f"{wheel.name} lacks {missing}: add them to package-data in pyproject.toml"
