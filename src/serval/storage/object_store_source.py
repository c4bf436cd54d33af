"""A model repository in an object store (``s3://bucket/prefix``), polled like a folder.

Each scan lists the store, downloads what is new or changed into a local cache (under
``--state-dir``) and reads the cache as a ``FileSystemSource`` does, so specs, version
policies and layout warnings behave as for a folder. A version folder is downloaded into a
staging folder and moved into the cache only once complete: every listed object of the size
(and plain-ETag MD5) its listing gives, and, when the version holds a manifest
(``.serval-manifest.json``), every file it names with its size and SHA-256. Until then the
version is *withheld*: not offered to the manager (the previous version keeps serving) and
its reason is in the repository index. A store that cannot be reached leaves the cache as it
is (what is loaded keeps serving) and says so through ``degraded()`` (readiness details).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: one process per cache folder
    fcntl = None  # type: ignore[assignment]

from serval.core.lifecycle.layout import parse_version
from serval.core.lifecycle.source import FileSystemSource, ModelSource
from serval.storage.object_store import (
    IncompleteObjectError,
    ObjectStore,
    StoredObject,
    StoreUnreachableError,
)

logger = logging.getLogger(__name__)

MANIFEST = ".serval-manifest.json"
_SYNCED = "synced.json"  # what the cache holds: each file's or version's listing signature


@dataclass(slots=True)
class _StoredModel:
    """One model folder of the store: its own files, and each version folder's objects
    (keys relative to the version folder)."""

    files: list[StoredObject] = field(default_factory=list)
    versions: dict[int, list[StoredObject]] = field(default_factory=lambda: defaultdict(list))


class ObjectStoreSource:
    """The models of ``store``, through a cache under ``cache_dir``."""

    def __init__(self, store: ObjectStore, cache_dir: Path) -> None:
        self.store = store
        self.root = cache_dir / "repository"  # what the loaders read
        self._staging = cache_dir / "staging"
        self._synced_file = cache_dir / _SYNCED
        self.root.mkdir(parents=True, exist_ok=True)
        self._local = FileSystemSource(self.root)
        self._synced: dict[str, str] = self._read_synced()
        # Versions that failed their check, by listing signature: not downloaded again until
        # the listing changes (an upload that goes on changes it).
        self._failed: dict[str, tuple[str, str]] = {}
        self._withheld: dict[str, dict[int, str]] = {}
        self._unreachable: str | None = None
        self._lock = threading.Lock()  # a poll's scan and an index request's, in two threads

    def scan(self) -> dict[str, ModelSource]:
        with self._lock, _CacheLock(self._synced_file.with_name("lock")):
            self._synced = self._read_synced()  # another worker may have synced meanwhile
            self._sync()
            withheld = {name: dict(versions) for name, versions in self._withheld.items()}
        models = self._local.scan()
        return {
            name: replace(model, withheld=withheld[name]) if withheld.get(name) else model
            for name, model in models.items()
        }

    def scan_model(self, name: str) -> ModelSource | None:
        return self.scan().get(name)

    def degraded(self) -> str | None:
        """Why the repository may be stale (the store is unreachable), for readiness."""
        unreachable = self._unreachable
        if unreachable is None:
            return None
        return f"model repository {self.store.url}: {unreachable}; serving the cached models"

    # -- syncing --------------------------------------------------------------------------

    def _sync(self) -> None:
        # Left by a process that stopped mid-download (under the lock, no one else's).
        shutil.rmtree(self._staging, ignore_errors=True)
        try:
            listing = self.store.list()
        except StoreUnreachableError as exc:
            self._note_unreachable(str(exc))
            return
        stored = _group(listing)
        try:
            for name, model in stored.items():
                self._sync_model(name, model)
        except StoreUnreachableError as exc:
            self._note_unreachable(str(exc))
            return
        self._remove_all_but(stored)
        self._withheld = {n: w for n, w in self._withheld.items() if n in stored and w}
        if self._unreachable is not None:
            logger.warning("model repository %s: reachable again", self.store.url)
        self._unreachable = None
        self._write_synced()

    def _note_unreachable(self, reason: str) -> None:
        if self._unreachable is None:
            logger.warning(
                "model repository %s: %s; serving the cached models", self.store.url, reason
            )
        self._unreachable = reason

    def _sync_model(self, name: str, model: _StoredModel) -> None:
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        for item in model.files:
            key = f"{name}/{item.key}"
            stale = self._synced.get(key) != _signature([item])
            if (stale or not (folder / item.key).is_file()) and self._download_file(
                item, name, folder / item.key
            ):
                self._synced[key] = _signature([item])
        withheld = self._withheld.setdefault(name, {})
        withheld.clear()
        for version, objects in model.versions.items():
            why = self._sync_version(name, version, objects)
            if why is not None:
                withheld[version] = why

    def _download_file(self, item: StoredObject, model: str, target: Path) -> bool:
        """A model folder's own file (model.yaml...): downloaded beside, then moved in.
        False when it is incomplete (the cache keeps its previous copy, if any)."""
        stored = StoredObject(f"{model}/{item.key}", item.size, item.etag)
        self._staging.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._staging) as staging:
            part = Path(staging) / "file"
            try:
                self.store.download(stored, part)
            except IncompleteObjectError as exc:
                logger.warning("model repository %s: %s", self.store.url, exc)
                return False
            target.parent.mkdir(parents=True, exist_ok=True)
            part.replace(target)
        return True

    def _sync_version(self, name: str, version: int, objects: list[StoredObject]) -> str | None:
        """Bring one version folder into the cache; why it is withheld (None: it is not)."""
        key, signature = f"{name}/{version}", _signature(objects)
        target = self.root / name / str(version)
        if self._synced.get(key) == signature and target.is_dir():
            return None
        failed = self._failed.get(key)
        if failed is not None and failed[0] == signature:
            return failed[1]
        self._staging.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self._staging))
        try:
            self._download_version(name, version, objects, staging)
        except IncompleteObjectError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            why = f"version {version} is incomplete in {self.store.url}, not loaded: {exc}"
            if failed is None or failed[0] != signature:
                logger.warning("model %s: %s", name, why)
            self._failed[key] = (signature, why)
            return why
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._failed.pop(key, None)
        _swap_in(staging, target)
        self._synced[key] = signature
        logger.info("model %s: version %d downloaded from %s", name, version, self.store.url)
        return None

    def _download_version(
        self, name: str, version: int, objects: list[StoredObject], staging: Path
    ) -> None:
        digests: dict[str, tuple[int, str]] = {}
        manifest: dict[str, object] | None = None
        for item in objects:
            stored = StoredObject(f"{name}/{version}/{item.key}", item.size, item.etag)
            if item.key == MANIFEST:
                manifest_path = staging.parent / f"{staging.name}.manifest"
                try:
                    self.store.download(stored, manifest_path)
                    manifest = _read_manifest(manifest_path)
                finally:
                    manifest_path.unlink(missing_ok=True)
            else:
                digests[item.key] = (item.size, self.store.download(stored, staging / item.key))
        if manifest is not None:
            _check_manifest(manifest, digests)

    def _remove_all_but(self, stored: dict[str, _StoredModel]) -> None:
        """Take out of the cache what the store no longer holds (its versions unload)."""
        for folder in self.root.iterdir():
            model = stored.get(folder.name)
            if model is None:
                _remove(folder)
                continue
            kept = {str(v) for v in model.versions} | {f.key.split("/")[0] for f in model.files}
            for child in folder.iterdir():
                if child.name not in kept:
                    _remove(child)
        keep = {f"{n}/{f.key}" for n, m in stored.items() for f in m.files}
        keep |= {f"{n}/{v}" for n, m in stored.items() for v in m.versions}
        self._synced = {k: s for k, s in self._synced.items() if k in keep}
        self._failed = {k: f for k, f in self._failed.items() if k in keep}

    def _read_synced(self) -> dict[str, str]:
        try:
            synced = json.loads(self._synced_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in synced.items()} if isinstance(synced, dict) else {}

    def _write_synced(self) -> None:
        part = self._synced_file.with_suffix(".part")
        part.write_text(json.dumps(self._synced, sort_keys=True), encoding="utf-8")
        part.replace(self._synced_file)


class _CacheLock:
    """An exclusive lock on the cache folder across processes (``--workers`` share it)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: IO[bytes] | None = None

    def __enter__(self) -> None:
        self._file = self._path.open("ab")
        if fcntl is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None


def _group(listing: list[StoredObject]) -> dict[str, _StoredModel]:
    """The listing by model folder and version folder; keys that cannot be a file of the
    repository (``..``, empty parts) and files beside the model folders are left out."""
    models: dict[str, _StoredModel] = {}
    for item in listing:
        parts = item.key.split("/")
        if len(parts) < 2 or any(p in {"", ".", ".."} for p in parts) or parts[0][0] == ".":
            continue
        model = models.setdefault(parts[0], _StoredModel())
        version = parse_version(parts[1]) if len(parts) > 2 else None
        rest = "/".join(parts[2:] if version is not None else parts[1:])
        entry = StoredObject(rest, item.size, item.etag)
        if version is not None:
            model.versions[version].append(entry)
        else:
            model.files.append(entry)
    return models


def _signature(objects: list[StoredObject]) -> str:
    digest = hashlib.sha1()
    for item in sorted(objects, key=lambda o: o.key):
        digest.update(f"{item.key}|{item.size}|{item.etag}\n".encode())
    return digest.hexdigest()


def _read_manifest(path: Path) -> dict[str, object]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IncompleteObjectError(f"{MANIFEST} is not JSON: {exc}") from exc
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, dict):
        raise IncompleteObjectError(f'{MANIFEST} has no "files" mapping')
    return files


def _check_manifest(files: dict[str, object], found: dict[str, tuple[int, str]]) -> None:
    """Every file the manifest names is there, of its size and SHA-256 (where given)."""
    missing = sorted(set(files) - set(found))
    if missing:
        raise IncompleteObjectError(f"{MANIFEST} names files not uploaded: {', '.join(missing)}")
    for name, promised in sorted(files.items()):
        size, sha256 = found[name]
        promise = promised if isinstance(promised, dict) else {}
        if "size" in promise and promise["size"] != size:
            raise IncompleteObjectError(f"{name}: {size} bytes, {MANIFEST} says {promise['size']}")
        if "sha256" in promise and str(promise["sha256"]).lower() != sha256:
            raise IncompleteObjectError(f"{name}: its SHA-256 is not the one {MANIFEST} gives")


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging`` with renames, so the loader never sees a mix."""
    old = target.with_name(f".{target.name}.old")
    _remove(old)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
