"""Archived CloudTrail as a record source: local files and folders, and S3 prefixes in the CloudTrail layout.

CloudTrail writes `AWSLogs/[<org-id>/]<account>/CloudTrail/<region>/YYYY/MM/DD/<file>.json.gz` (digests under
`CloudTrail-Digest/`). Listing is lazy (a paginator, or a folder walk) and reading runs on a thread pool with
a bounded number of objects in flight, so a month of logs is read with the memory of a few files. A date
range prunes whole year/month/day prefixes before they are listed.

Each object is decoded where it is read (gunzip releases the GIL); the caller only matches. An object that
cannot be read is reported as a `ReadFailure`, never raised in the middle of a run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from stream_processor.alerts.aws_errors import error_code, error_message
from stream_processor.decode import decode_bytes
from stream_processor.model import DecodeResult

S3_SCHEME = "s3://"
DEFAULT_WORKERS = 8

# `.../CloudTrail/<region>/YYYY/MM/DD/` (and CloudTrail-Digest, CloudTrail-Insight): also matches partial
# paths (a year or month prefix) for pruning.
_DATE_PATH = re.compile(r"(?:^|/)CloudTrail(?:-Digest|-Insight)?/[^/]+/(\d{4})(?:/(\d{2})(?:/(\d{2}))?)?(?:/|$)")


@dataclass(frozen=True, slots=True)
class DateRange:
    """Inclusive range of UTC days of the archive's date path; None ends are open."""

    since: date | None = None
    until: date | None = None

    @property
    def unbounded(self) -> bool:
        return self.since is None and self.until is None

    def may_contain(self, path: str) -> bool:
        """False only when `path` (a key, a prefix or a file path) lies in a CloudTrail date folder outside
        the range; paths without a date (other layouts, JSON lines files) are always read."""
        if self.unbounded:
            return True
        found = _DATE_PATH.search(path)
        if found is None:
            return True
        year, month, day = found.group(1), found.group(2), found.group(3)
        first = date(int(year), int(month or 1), int(day or 1))
        if month is None:
            last = date(int(year), 12, 31)
        elif day is None:
            last = _month_end(int(year), int(month))
        else:
            last = first
        return (self.since is None or last >= self.since) and (self.until is None or first <= self.until)


ALL_DATES = DateRange()


def _month_end(year: int, month: int) -> date:
    following = date(year + (month == 12), month % 12 + 1, 1)
    return date.fromordinal(following.toordinal() - 1)


@dataclass(frozen=True, slots=True)
class ArchiveObject:
    """One file or S3 object to read; `name` is what a person types to find it (a path or s3://bucket/key)."""

    name: str
    size: int


@dataclass(frozen=True, slots=True)
class ReadObject:
    """What one object decoded to."""

    source: ArchiveObject
    decoded: DecodeResult


@dataclass(frozen=True, slots=True)
class ReadFailure:
    """An object that could not be read (gone, denied, an I/O error): reported, the run goes on."""

    source: ArchiveObject
    reason: str


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` as (bucket, prefix).

    Raises:
        ValueError: not an s3:// URL with a bucket.
    """
    if not url.startswith(S3_SCHEME):
        raise ValueError(f"{url!r} is not an s3:// URL")
    bucket, _, prefix = url.removeprefix(S3_SCHEME).partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket")
    return bucket, prefix


def list_local(path: Path, dates: DateRange = ALL_DATES) -> Iterator[ArchiveObject]:
    """A file, or every file under a folder (sorted, hidden files skipped), pruned by the date path.

    Raises:
        FileNotFoundError: `path` does not exist.
    """
    if path.is_file():
        yield ArchiveObject(str(path), path.stat().st_size)
        return
    if not path.is_dir():
        raise FileNotFoundError(2, "no such file or folder", str(path))
    for child in sorted(path.iterdir()):
        if child.name.startswith(".") or not dates.may_contain(child.as_posix() + ("/" if child.is_dir() else "")):
            continue
        if child.is_dir():
            yield from list_local(child, dates)
        elif child.is_file():
            yield ArchiveObject(str(child), child.stat().st_size)


def list_s3(client: Any, bucket: str, prefix: str, dates: DateRange = ALL_DATES) -> Iterator[ArchiveObject]:
    """Every object under the prefix, lazily. With a date range the walk goes folder by folder so that
    years, months and days outside it are never listed; without one it is one flat paginated listing."""
    paginator = client.get_paginator("list_objects_v2")
    if dates.unbounded:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield ArchiveObject(f"{S3_SCHEME}{bucket}/{item['Key']}", int(item.get("Size", 0)))
        return
    pending = [prefix]
    while pending:
        current = pending.pop()
        folders: list[str] = []
        for page in paginator.paginate(Bucket=bucket, Prefix=current, Delimiter="/"):
            for item in page.get("Contents", []):
                if dates.may_contain(item["Key"]):
                    yield ArchiveObject(f"{S3_SCHEME}{bucket}/{item['Key']}", int(item.get("Size", 0)))
            folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", []) if dates.may_contain(p["Prefix"]))
        pending.extend(reversed(folders))  # depth first, in key order


class ArchiveReader:
    """Reads objects on a thread pool, at most `in_flight` at a time, and yields them as they finish."""

    def __init__(self, s3_client: Any | None = None, workers: int = DEFAULT_WORKERS, in_flight: int | None = None):
        self._s3 = s3_client
        self.workers = max(1, workers)
        self.in_flight = max(1, in_flight or 2 * self.workers)

    def read_bytes(self, source: ArchiveObject) -> bytes:
        if source.name.startswith(S3_SCHEME):
            if self._s3 is None:
                raise ValueError("an S3 object but no S3 client")
            bucket, key = parse_s3_url(source.name)
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
            return data
        return Path(source.name).read_bytes()

    def _read(self, source: ArchiveObject) -> ReadObject:
        return ReadObject(source, decode_bytes(self.read_bytes(source), source.name))

    def read(
        self, sources: Iterable[ArchiveObject], on_listed: Callable[[ArchiveObject], None] | None = None
    ) -> Iterator[ReadObject | ReadFailure]:
        """Decode every object; yields in completion order. `on_listed` sees each object as it is listed."""
        iterator = iter(sources)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="archive") as pool:
            running: dict[Future[ReadObject], ArchiveObject] = {}
            exhausted = False
            while running or not exhausted:
                while not exhausted and len(running) < self.in_flight:
                    source = next(iterator, None)
                    if source is None:
                        exhausted = True
                        break
                    if on_listed is not None:
                        on_listed(source)
                    running[pool.submit(self._read, source)] = source
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    source = running.pop(future)
                    error = future.exception()
                    if error is None:
                        yield future.result()
                    else:
                        yield ReadFailure(source, _reason(error))


def _reason(error: BaseException) -> str:
    if getattr(error, "response", None) is not None:
        return f"{error_code(error)}: {error_message(error)}".strip(": ") or type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}"
