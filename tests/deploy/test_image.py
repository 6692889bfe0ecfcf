"""Building the image: scripts/build-image with Podman or Docker, and a pin file that holds on
every Python 3.11 release (no engine runs here: the tools are stand-ins that record their
arguments, and pip resolves without installing)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.manifests import DOCKER, ROOT

BUILD_IMAGE = ROOT / "scripts" / "build-image"
REQUIREMENTS = DOCKER / "requirements.txt"


def stand_in(bin_dir: Path, name: str) -> Path:
    """An executable `name` that writes its working directory and arguments, one a line."""
    record = bin_dir / f"{name}.args"
    tool = bin_dir / name
    tool.write_text(f'#!/bin/sh\n{{ pwd; printf "%s\\n" "$@"; }} > {record}\n')
    tool.chmod(0o755)
    return record


def installed(tool: str) -> bool:
    return any((Path(folder) / tool).exists() for folder in ("/usr/bin", "/bin"))


def build_image(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Only the stand-ins and the basic tools: the machine's own docker is not found.
    environ = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(
        [str(BUILD_IMAGE), *args], env=environ, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("tools", "used", "format_args"),
    [
        pytest.param(["podman"], "podman", ["--format", "docker"], id="podman, docker format"),
        pytest.param(["docker"], "docker", [], id="docker"),
        pytest.param(["podman", "docker"], "podman", ["--format", "docker"], id="both: podman"),
    ],
)
def test_build_image_builds_the_dockerfile_as_neu_gateway_local(
    tmp_path: Path, tools: list[str], used: str, format_args: list[str]
) -> None:
    if any(installed(tool) for tool in {"podman", "docker"} - set(tools)):
        pytest.skip("a real podman or docker in /usr/bin would be found")
    records = {tool: stand_in(tmp_path, tool) for tool in tools}
    ran = build_image(tmp_path, "--pull=never")
    assert ran.returncode == 0, ran.stderr
    cwd, *argv = records[used].read_text().splitlines()
    assert Path(cwd) == ROOT
    # Podman's default (OCI) format has no HEALTHCHECK: --format docker keeps it.
    tag = ["-t", "neu-gateway:local"]
    assert argv == ["build", *format_args, "-f", "Dockerfile", *tag, "--pull=never", "."]
    assert all(not record.exists() for tool, record in records.items() if tool != used)


def test_build_image_says_what_is_missing(tmp_path: Path) -> None:
    if installed("podman") or installed("docker"):
        pytest.skip("a real podman or docker is installed in /usr/bin")
    ran = build_image(tmp_path)
    assert ran.returncode == 2
    assert "neither podman nor docker" in ran.stderr


def pins() -> dict[str, Requirement]:
    lines = REQUIREMENTS.read_text(encoding="utf-8").splitlines()
    found = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {canonicalize_name(pin.name): pin for pin in found}


def environment(micro: int) -> dict[str, str]:
    return {
        "python_version": "3.11",
        "python_full_version": f"3.11.{micro}",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_machine": "x86_64",
        "extra": "",
    }


@pytest.mark.e2e
def test_pins_cover_pips_resolution_on_every_python_311(tmp_path: Path) -> None:
    """pip resolves pyproject's dependencies under the pins; everything it picks is pinned,
    and every dependency of a picked package that any 3.11.x asks for (by its environment
    marker) is pinned too, under a marker that installs it there."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    report_path = tmp_path / "report.json"
    ran = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"),
            *("--report", str(report_path), "-c", str(REQUIREMENTS), *project["dependencies"]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    installs = json.loads(report_path.read_text())["install"]
    pinned = pins()
    resolved = {canonicalize_name(item["metadata"]["name"]): item for item in installs}
    for name, item in resolved.items():
        assert name in pinned, f"pip picks {name}, which is not pinned"
        assert pinned[name].specifier.contains(item["metadata"]["version"])
    for micro in range(16):
        env = environment(micro)
        for item in resolved.values():
            for text in item["metadata"].get("requires_dist") or []:
                wanted = Requirement(text)
                if wanted.marker is not None and not wanted.marker.evaluate(env):
                    continue
                pin = pinned.get(canonicalize_name(wanted.name))
                assert pin is not None, f"3.11.{micro}: {item['metadata']['name']} needs {text}"
                assert pin.marker is None or pin.marker.evaluate(env), f"3.11.{micro}: {pin}"
                (exact,) = pin.specifier
                assert wanted.specifier.contains(exact.version, prereleases=True), f"{pin}: {text}"


def test_build_image_names_a_chosen_tool_that_is_missing(tmp_path: Path) -> None:
    ran = subprocess.run(
        [str(BUILD_IMAGE)],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "NEU_IMAGE_TOOL": "podman-not-here"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 2
    assert (
        ran.stderr
        == "build-image: podman-not-here is not installed (NEU_IMAGE_TOOL=podman-not-here)\n"
    )


def test_build_image_says_first_when_docker_has_no_daemon(tmp_path: Path) -> None:
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\n[ "$1" = info ] && exit 1\necho built\n')
    docker.chmod(0o755)
    ran = subprocess.run(
        [str(BUILD_IMAGE)],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "NEU_IMAGE_TOOL": str(docker)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 2
    assert "cannot reach a Docker daemon" in ran.stderr
    assert "built" not in ran.stdout
