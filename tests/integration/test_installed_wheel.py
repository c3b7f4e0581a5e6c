"""The package as the Docker image installs it: a wheel, away from the repository.

The local tools (demo, produce, stack) must run from the installed files alone: their data ships as package
data, and whatever cannot ship (kinesis-local's node_modules, the KCL jars) is looked up through a setting or
the current directory, never through a path climbing out of the package into a checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# A path built by climbing out of the package from its own location (how a checkout gets reached).
CLIMBING_OUT = re.compile(r"\.parents\[|\.parent\.parent|\bREPO_ROOT\b")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout and installed (without dependencies) into a folder of its own."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(folder / "dist"), "."],
        cwd=REPO_ROOT,
        check=True,
        timeout=90,
    )
    (wheel,) = (folder / "dist").glob("cloudtrail_stream_processor-*.whl")
    target = folder / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=60,
    )
    return target


def run_installed(target: Path, work_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `stream-processor` script from `work_dir` with the wheel and the dependencies only.

    `-S` skips the site folder and its .pth files (this venv's editable install of the checkout among them);
    the dependencies come from this venv's site-packages on PYTHONPATH, after the wheel's files.
    """
    dependencies = sysconfig.get_paths()["purelib"]
    home = work_dir / "home"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(target), dependencies]),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [sys.executable, "-S", "-P", str(target / "bin" / "stream-processor"), *args],
        cwd=work_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_local_commands_answer_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    for command in ("demo", "produce", "stack"):
        finished = run_installed(installed, tmp_path, command, "--help")
        assert finished.returncode == 0, finished.stderr
        assert f"stream-processor {command}" in finished.stdout


def test_the_seed_rules_are_package_data(installed: Path, tmp_path: Path) -> None:
    finished = subprocess.run(
        [
            sys.executable,
            "-S",
            "-P",
            "-c",
            "from stream_processor.local.resources import SEED_CONFIG; print(SEED_CONFIG)",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert finished.returncode == 0, finished.stderr
    seed = Path(finished.stdout.strip())
    assert seed.is_relative_to(installed / "stream_processor")
    assert seed.read_bytes() == (REPO_ROOT / "examples" / "seed.toml").read_bytes()


def test_a_demo_without_kinesis_local_says_how_to_install_it_from_the_packaged_manifest(
    installed: Path, tmp_path: Path
) -> None:
    # WHEN the installed demo runs in an empty folder, where nothing is set up
    finished = run_installed(installed, tmp_path, "demo", "--kcl-jars", str(tmp_path))
    output = finished.stdout + finished.stderr
    # THEN it stops before starting anything, with the commands that install kinesis-local from the wheel's files
    assert finished.returncode == 1, output
    unwrapped = re.sub(r"\s*\n\s*", " ", output)
    manifest = installed / "stream_processor" / "local" / "data" / "kinesis-local"
    assert f"cp {manifest}/package.json {manifest}/package-lock.json" in unwrapped, output
    assert f"npm ci --prefix {tmp_path}/home/.cache/stream-processor/kinesis-local" in unwrapped, output
    assert "STREAM_PROCESSOR_KCL_JARS" in unwrapped, output
    # AND nothing it names is in the checkout it was built from
    assert str(REPO_ROOT) not in output
    assert not (tmp_path / ".local").exists() or not any((tmp_path / ".local").iterdir())


def test_no_file_of_the_package_reaches_outside_it(installed: Path) -> None:
    files = sorted((installed / "stream_processor").rglob("*"))
    assert any(path.name == "seed.toml" for path in files)
    for path in files:
        if path.is_symlink():
            pytest.fail(f"{path} is a link: a wheel carries files")
        if path.suffix != ".py":
            continue
        text = path.read_text(encoding="utf-8")
        found = [line for line in text.splitlines() if CLIMBING_OUT.search(line)]
        assert found == [], f"{path.relative_to(installed)} builds a path outside the package: {found}"
