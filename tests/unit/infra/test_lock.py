"""requirements/*.txt, the lock: every install (make setup, the image, the Lambda package) takes exactly these pins.

pyproject.toml states the ranges the package supports; `make lock` resolves them into the lock. These tests read
both files only (no network, no resolver), and fail when pyproject.toml changed without a `make lock`: a
dependency added, dropped or given a range its pin no longer meets. They also keep the runtime pins (what the
Lambda package and the image ship) the ones the tests run on.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT

LOCK_DIR = REPO_ROOT / "requirements"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
FROM_PYPROJECT = "cloudtrail-stream-processor (pyproject.toml)"
RUNTIME_CONSTRAINT = "-c requirements/runtime.txt"
TOOLS = "requirements/tools.in"
# The environment the lock is resolved for (the Makefile's LOCK_TARGET): Python 3.11 on Linux, x86_64.
LOCK_ENVIRONMENT = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
                    "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                    "implementation_name": "cpython", "platform_python_implementation": "CPython"}  # fmt: skip
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")
# The native code that decides what a rule matches and how a record decodes: what the tests run must be what
# Lambda and the image run.
SAME_AS_TESTED = ("jq", "google-re2", "orjson", "zlib-ng")


@dataclass(frozen=True)
class Pin:
    """One locked package: its version, the hashes pip checks, and uv's `# via` (who asked for it)."""

    version: str
    hashes: frozenset[str]
    via: tuple[str, ...]


@dataclass(frozen=True)
class Lock:
    """One lock file and what it was compiled from: pyproject's dependencies (unless `base` is false), extras."""

    file: str
    extras: tuple[str, ...]
    base: bool = True
    tools: bool = False

    def pins(self) -> dict[str, Pin]:
        return read_lock(LOCK_DIR / self.file)

    def requirements(self) -> list[Requirement]:
        texts = list(PYPROJECT["project"]["dependencies"]) if self.base else []
        for extra in self.extras:
            texts += PYPROJECT["project"]["optional-dependencies"][extra]
        if self.tools:
            texts += tool_requirements()
        found = [Requirement(text) for text in texts]
        return [r for r in found if r.marker is None or r.marker.evaluate({**LOCK_ENVIRONMENT, "extra": ""})]


LOCKS = (
    Lock("runtime.txt", extras=()),
    Lock("kcl.txt", extras=("kcl",)),
    Lock("dev.txt", extras=("dev",), tools=True),
    Lock("checkov.txt", extras=("iac-scan",), base=False),  # the scanner's own venv, without the package
)


def tool_requirements() -> list[str]:
    lines = (line.split("#")[0].strip() for line in (LOCK_DIR / "tools.in").read_text().splitlines())
    return [line for line in lines if line]


def read_lock(path: Path) -> dict[str, Pin]:
    """Parse uv's hashed requirements format: `name==version \\`, `--hash=...` lines, then `# via` lines."""
    pins: dict[str, Pin] = {}
    name = ""
    version = ""
    hashes: set[str] = set()
    via: list[str] = []

    def close() -> None:
        if name:
            assert name not in pins, f"{path.name}: {name} pinned twice"
            pins[name] = Pin(version, frozenset(hashes), tuple(via))

    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or (not line.startswith(" ") and stripped.startswith("#")):
            continue
        if not line.startswith(" "):
            match = PIN.match(stripped)
            assert match, f"{path.name}: {line!r} is not a `name==version` pin"
            close()
            name, version, hashes, via = canonicalize_name(match["name"]), match["version"], set(), []
        elif stripped.startswith("--hash="):
            hashes.add(stripped.removeprefix("--hash=").rstrip(" \\"))
        elif stripped.startswith("# via "):
            via.append(stripped.removeprefix("# via ").strip())
        elif stripped.startswith("#   "):
            via.append(stripped.removeprefix("#").strip())
    close()
    return pins


def lock_ids(lock: Lock) -> str:
    return lock.file


@pytest.mark.parametrize("lock", LOCKS, ids=lock_ids)
def test_every_pin_has_hashes(lock: Lock) -> None:
    pins = lock.pins()
    assert pins, f"requirements/{lock.file} pins nothing"
    unhashed = sorted(name for name, pin in pins.items() if not pin.hashes)
    assert not unhashed, f"requirements/{lock.file} has pins without hashes (pip --require-hashes fails): {unhashed}"


@pytest.mark.parametrize("lock", LOCKS, ids=lock_ids)
def test_every_dependency_in_pyproject_is_locked_within_its_range(lock: Lock) -> None:
    pins = lock.pins()
    for requirement in lock.requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"pyproject.toml requires {requirement}, requirements/{lock.file} lacks it: `make lock`"
        version = pins[name].version
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements/{lock.file} pins {name}=={version}, outside pyproject.toml's {requirement}: `make lock`"
        )


@pytest.mark.parametrize("lock", LOCKS, ids=lock_ids)
def test_no_pin_is_kept_for_a_dependency_pyproject_dropped(lock: Lock) -> None:
    """uv notes who asked for each pin: pyproject.toml may only be named for what it still requires."""
    required = {canonicalize_name(requirement.name) for requirement in lock.requirements()}
    tools = {canonicalize_name(Requirement(text).name) for text in tool_requirements()}
    pins = lock.pins()
    for name, pin in pins.items():
        if FROM_PYPROJECT in pin.via or not pin.via:  # no `via`: read from stdin, the checkov lock's requirements
            assert name in required, f"requirements/{lock.file} pins {name}, which pyproject.toml dropped: `make lock`"
        if f"-r {TOOLS}" in pin.via:
            assert name in tools, f"requirements/{lock.file} pins {name} for {TOOLS}, which no longer lists it"
        others = {canonicalize_name(v) for v in pin.via if v not in (FROM_PYPROJECT, RUNTIME_CONSTRAINT, f"-r {TOOLS}")}
        assert others <= pins.keys(), f"requirements/{lock.file}: {name} is wanted by {others - pins.keys()}"


@pytest.mark.parametrize("lock", [lock for lock in LOCKS if lock.base and lock.extras], ids=lock_ids)
def test_the_runtime_pins_are_the_ones_every_install_uses(lock: Lock) -> None:
    """The tests (dev.txt) and the image (kcl.txt) run the versions the Lambda package (runtime.txt) ships."""
    runtime = read_lock(LOCK_DIR / "runtime.txt")
    pins = lock.pins()
    for name, pin in runtime.items():
        assert name in pins, f"requirements/{lock.file} lacks {name}, which runtime.txt pins: `make lock`"
        assert pins[name].version == pin.version, (
            f"requirements/{lock.file} pins {name}=={pins[name].version}, runtime.txt {pin.version}: `make lock`"
        )


def test_the_extras_of_locked_requirements_are_locked_too() -> None:
    """`moto[server]`, `boto3-stubs[s3,...]`: what an extra adds must be in the lock (read from what is installed)."""
    for lock in LOCKS:
        pins = lock.pins()
        for requirement in lock.requirements():
            if not requirement.extras:
                continue
            try:
                requires = importlib.metadata.requires(requirement.name) or []
            except importlib.metadata.PackageNotFoundError:
                continue  # not installed here (e.g. checkov lives in its own venv)
            for text in requires:
                needed = Requirement(text)
                if needed.marker is not None and any(
                    needed.marker.evaluate({**LOCK_ENVIRONMENT, "extra": extra}) for extra in requirement.extras
                ):
                    assert canonicalize_name(needed.name) in pins, (
                        f"{requirement} needs {needed.name}, requirements/{lock.file} lacks it: `make lock`"
                    )


def test_the_build_backend_is_locked_for_the_installs_without_build_isolation() -> None:
    pins = read_lock(LOCK_DIR / "dev.txt")
    for text in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"[build-system] requires {requirement}: add it to {TOOLS} and `make lock`"
        assert requirement.specifier.contains(pins[name].version, prereleases=True), f"{name} outside {requirement}"


@pytest.mark.parametrize("name", SAME_AS_TESTED)
def test_the_matcher_and_decoder_installed_here_are_the_locked_ones(name: str) -> None:
    locked = read_lock(LOCK_DIR / "runtime.txt")[name].version
    installed = importlib.metadata.version(name)
    assert installed == locked, (
        f"the tests run {name} {installed}, Lambda and the image would run {locked}: `make setup` installs the lock"
    )


def test_every_install_reads_the_lock() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/dev.txt" in makefile  # make setup
    assert "--require-hashes -r requirements/kcl.txt" in makefile  # amazon-kclpy built from the local jars
    assert "--require-hashes -r requirements/checkov.txt" in makefile
    assert "cat requirements/runtime.txt" in makefile  # the Lambda package
    assert "--only-binary=:all: --require-hashes" in makefile
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/kcl.txt" in dockerfile
    assert "!requirements/kcl.txt" in (REPO_ROOT / ".dockerignore").read_text().splitlines()


def test_the_lambda_build_targets_a_platform_lambda_can_load() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "manylinux_2_26_x86_64" in makefile  # jq 1.13 ships manylinux_2_26 only; Amazon Linux 2 has glibc 2.26
    assert "--python-version 3.11" in makefile
    runtimes = {line.split(":")[1].strip() for line in (REPO_ROOT / "infra/cloudformation/lambda.yaml").read_text()
                .splitlines() if line.strip().startswith("Runtime:")}  # fmt: skip
    assert runtimes == {"python3.11"}
