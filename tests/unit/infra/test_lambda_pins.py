"""infra/lambda/requirements.txt: the Lambda package is built from the versions the tests run.

Every runtime dependency is pinned (`==`) within pyproject's bounds; the native ones that decide what a rule
matches and how a record decodes (jq and its libjq, orjson, zlib-ng) must be the versions installed here, so a
Lambda never runs a matcher the test suite did not. `make lambda-pins` rewrites the file from this .venv.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[3]
PINS = REPO_ROOT / "infra" / "lambda" / "requirements.txt"
SAME_AS_TESTED = ("jq", "orjson", "zlib-ng")


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in PINS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, separator, version = line.partition("==")
            assert separator, f"{line!r} is not pinned with =="
            found[name.strip().lower()] = version.strip()
    return found


def test_every_dependency_of_the_package_is_pinned_within_its_bounds() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pinned = pins()
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = requirement.name.lower()
        assert name in pinned, f"{name} is a dependency but infra/lambda/requirements.txt does not pin it"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]} is outside {requirement}"
    for name in pinned:  # transitive ones too: what the direct ones require
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                assert requirement.name.lower().replace("_", "-") in pinned, f"{name} needs {requirement.name}"


@pytest.mark.parametrize("name", SAME_AS_TESTED)
def test_the_matcher_and_decoder_in_lambda_are_the_ones_tested(name: str) -> None:
    installed = importlib.metadata.version(name)
    assert pins()[name] == installed, (
        f"Lambda would run {name} {pins()[name]}, the tests run {installed}: run `make lambda-pins` "
        "(after `make test` passes) and commit infra/lambda/requirements.txt"
    )


def test_the_documented_build_uses_the_pins_and_a_platform_lambda_can_load() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "-r infra/lambda/requirements.txt" in makefile
    assert "manylinux_2_26_x86_64" in makefile  # jq 1.13 ships manylinux_2_26 only; Amazon Linux 2 has glibc 2.26
    assert "--python-version 3.11" in makefile
    runtimes = {line.split(":")[1].strip() for line in (REPO_ROOT / "infra/cloudformation/lambda.yaml").read_text()
                .splitlines() if line.strip().startswith("Runtime:")}  # fmt: skip
    assert runtimes == {"python3.11"}
