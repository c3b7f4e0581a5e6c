"""What the local tools ship with, and where they keep what cannot ship.

The seed rules, kinesis-local's pinned npm manifest and the loopback preload are package data, so the demo and
the local stack work from an installed wheel. What npm installs cannot be package data: it lives in a folder
the user names, or by default in the current directory's `infra/local` (a checkout) or a user cache folder,
never inside the installed package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path

DATA_FOLDER = "data"
CACHE_FOLDER = "stream-processor"


def packaged_file(*parts: str) -> Path:
    """A file shipped in `stream_processor/local/data/`, as a path on disk (node and the demo open it by name).

    Raises:
        RuntimeError: the package is not installed as plain files (a zip import), or the file is missing.
    """
    resource = files(__package__).joinpath(DATA_FOLDER, *parts)
    if not isinstance(resource, Path) or not resource.is_file():
        raise RuntimeError(
            f"{'/'.join(parts)} is not on disk under the installed stream_processor.local package: "
            "install the package as files (pip install), not as a zip"
        )
    return resource


def user_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """This project's folder in the user's cache ($XDG_CACHE_HOME, else ~/.cache): for downloads, not state."""
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / CACHE_FOLDER


SEED_CONFIG = packaged_file("seed.toml")
"""The demo's rules: tattletail's example config (examples/seed.toml in a checkout links here)."""
