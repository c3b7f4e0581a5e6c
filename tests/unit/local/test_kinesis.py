"""Where kinesis-local is looked up, and what a missing one tells the user to run."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from stream_processor.local.kinesis import ENTRY_POINT, PREFIX_ENV, find_kinesis_local
from stream_processor.local.resources import SEED_CONFIG, packaged_file


def installed_at(prefix: Path) -> Path:
    entry = prefix / ENTRY_POINT
    entry.parent.mkdir(parents=True)
    entry.write_text("// kinesis-local\n")
    return prefix


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory, away from any checkout."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_the_folder_given_wins_over_the_setting_and_the_defaults(tmp_path: Path, elsewhere: Path) -> None:
    given = installed_at(tmp_path / "given")
    installed_at(elsewhere / "infra" / "local")
    environ = {PREFIX_ENV: str(installed_at(tmp_path / "env"))}
    assert find_kinesis_local(given, environ) == given.resolve()
    assert find_kinesis_local(None, environ) == (tmp_path / "env").resolve()


def test_a_checkout_s_infra_local_comes_before_the_user_cache(tmp_path: Path, elsewhere: Path) -> None:
    environ = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    cache = installed_at(tmp_path / "cache" / "stream-processor" / "kinesis-local")
    assert find_kinesis_local(None, environ) == cache.resolve()
    checkout = installed_at(elsewhere / "infra" / "local")
    assert find_kinesis_local(None, environ) == checkout.resolve()


def test_a_missing_kinesis_local_comes_with_the_npm_command_that_installs_it(tmp_path: Path, elsewhere: Path) -> None:
    cache = tmp_path / "cache" / "stream-processor" / "kinesis-local"
    with pytest.raises(RuntimeError) as raised:
        find_kinesis_local(None, {"XDG_CACHE_HOME": str(tmp_path / "cache")})
    manifest = [
        shlex.quote(str(packaged_file("kinesis-local", name))) for name in ("package.json", "package-lock.json")
    ]
    assert f"cp {' '.join(manifest)} {cache}/ && npm ci --prefix {cache} " in str(raised.value)
    assert PREFIX_ENV in str(raised.value)


def test_a_setting_that_points_nowhere_is_not_replaced_by_a_default(tmp_path: Path, elsewhere: Path) -> None:
    installed_at(elsewhere / "infra" / "local")
    with pytest.raises(RuntimeError, match=r"npm ci --prefix .*nowhere"):
        find_kinesis_local(None, {PREFIX_ENV: str(tmp_path / "nowhere")})


def test_the_checkout_s_paths_are_links_to_the_packaged_files_not_copies() -> None:
    repo = Path(__file__).resolve().parents[3]
    assert SEED_CONFIG.samefile(repo / "examples" / "seed.toml")
    assert packaged_file("kinesis-local", "package-lock.json").samefile(repo / "infra" / "local" / "package-lock.json")
