"""The model repository the settings name: a folder, or an object store's ``s3://`` URL
(boto3 is the ``s3`` extra: imported only when a URL asks for it)."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from serval.core.lifecycle.source import FileSystemSource, Source

OBJECT_STORE_DIR = "object-store"  # under --state-dir: one cache folder per repository URL


class RepositoryUrlError(ValueError):
    """The model repository's URL names nothing serval can open (the message says why)."""


@dataclass(frozen=True, slots=True)
class OpenedRepository:
    """The source the manager polls, the local folder its files are read from, and a check
    that says what is degraded (None: nothing)."""

    source: Source
    folder: Path
    degraded: Callable[[], str | None]


def check_repository_url(url: str) -> str | None:
    """What is wrong with an s3:// repository ``url`` (None: nothing), before the server
    starts: its form, and whether boto3 is installed."""
    bucket = url.removeprefix("s3://").partition("/")[0]
    if not url.startswith("s3://") or not bucket:
        return f"{url!r} is not an object store's URL: expected s3://bucket/prefix"
    if importlib.util.find_spec("boto3") is None:
        return f"{url}: an s3:// model repository needs boto3: pip install 'serval-server[s3]'"
    return None


def open_model_repository(repository: Path | str, state_dir: Path) -> OpenedRepository:
    """A ``FileSystemSource`` over a folder, or an object store's source over a cache
    folder under ``state_dir``. Never connects: the first scan does."""
    if isinstance(repository, Path):
        return OpenedRepository(FileSystemSource(repository), repository, lambda: None)
    try:
        from serval.storage.object_store import ObjectStore  # noqa: PLC0415 - the extra
        from serval.storage.object_store_source import ObjectStoreSource  # noqa: PLC0415
    except ImportError as exc:
        raise RepositoryUrlError(
            f"{repository}: an s3:// model repository needs boto3: pip install 'serval-server[s3]'"
        ) from exc
    try:
        store = ObjectStore(repository)
    except ValueError as exc:
        raise RepositoryUrlError(str(exc)) from exc
    digest = hashlib.sha1(repository.encode()).hexdigest()[:12]
    cache = state_dir / OBJECT_STORE_DIR / f"{store.bucket}-{digest}"
    source = ObjectStoreSource(store, cache)
    return OpenedRepository(source, source.root, source.degraded)
