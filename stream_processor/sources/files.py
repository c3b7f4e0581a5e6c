"""Archived CloudTrail as a record source: local files and folders, and S3 prefixes in the CloudTrail layout.

CloudTrail writes `AWSLogs/[<org-id>/]<account>/CloudTrail/<region>/YYYY/MM/DD/<file>.json.gz` (digests under
`CloudTrail-Digest/`). Listing is lazy (a paginator, or a folder walk) and reading runs on a thread pool with
a bounded number of objects in flight, so a month of logs is read with the memory of a few files. A date
range prunes whole year/month/day prefixes before they are listed.

Objects are read as streams of chunks (`object_chunks`), so decoding never holds a whole file; a caller that
cannot read one reports it with `failure_reason` and goes on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

from stream_processor.aws import S3_SCHEME, split_s3_url
from stream_processor.aws_errors import error_code, error_message

CHUNK_BYTES = 1024 * 1024

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


def read_chunks(stream: BinaryIO, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """A file's bytes in pieces, so that decoding never needs the whole file at once."""
    while chunk := stream.read(size):
        yield chunk


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


def object_chunks(source: ArchiveObject, s3_client: Any | None = None) -> Iterator[bytes]:
    """An object's bytes as a stream of chunks: a local file, or an S3 object's body as it arrives.

    Raises:
        OSError, botocore errors: the object cannot be read (`failure_reason` words them).
    """
    if source.name.startswith(S3_SCHEME):
        if s3_client is None:
            raise ValueError("an S3 object but no S3 client")
        bucket, key = split_s3_url(source.name)
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            yield from body.iter_chunks(CHUNK_BYTES)
        finally:
            body.close()
        return
    with Path(source.name).open("rb") as stream:
        yield from read_chunks(stream)


def failure_reason(error: BaseException) -> str:
    """One line saying why an object could not be read (an AWS error code and message, or the OS's)."""
    if getattr(error, "response", None) is not None:
        return f"{error_code(error)}: {error_message(error)}".strip(": ") or type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}"
