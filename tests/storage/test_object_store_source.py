"""A model repository in an object store, against moto's S3 server: versions added and
removed, partial uploads withheld, an unreachable store."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from serval.core.lifecycle.source import ModelSource
from serval.storage.object_store import ObjectStore, StoredObject
from serval.storage.object_store_source import MANIFEST, ObjectStoreSource
from serval.storage.open_repository import check_repository_url, open_model_repository
from serval.testing import free_port
from tests.s3_server import S3Server, manifest, new_bucket, running_s3

PREFIX = "models"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with running_s3() as server:
        yield server


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[str]:
    with new_bucket(s3_server) as name:
        yield name


def source_for(server: S3Server, name: str, cache: Path) -> ObjectStoreSource:
    return ObjectStoreSource(ObjectStore(f"s3://{name}/{PREFIX}", client=server.client()), cache)


def put(server: S3Server, name: str, key: str, body: bytes) -> None:
    server.client().put_object(Bucket=name, Key=f"{PREFIX}/{key}", Body=body)


def delete(server: S3Server, name: str, key: str) -> None:
    server.client().delete_object(Bucket=name, Key=f"{PREFIX}/{key}")


def versions(scan: dict[str, ModelSource], model: str = "m") -> set[int]:
    return set(scan[model].versions)


def test_versions_added_and_removed_follow_the_store(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    put(s3_server, bucket, "m/model.yaml", b"version_policy: all\n")
    put(s3_server, bucket, "m/1/model.onnx", b"one")
    put(s3_server, bucket, "m/1/extra/vocab.txt", b"a b c")
    source = source_for(s3_server, bucket, tmp_path)

    scan = source.scan()
    assert versions(scan) == {1}
    folder = scan["m"].versions[1].path
    assert (folder / "model.onnx").read_bytes() == b"one"
    assert (folder / "extra" / "vocab.txt").read_bytes() == b"a b c"
    assert scan["m"].spec is not None and scan["m"].spec.policy.describe() == "all"
    assert source.degraded() is None

    put(s3_server, bucket, "m/2/model.onnx", b"two")
    scan = source.scan()
    assert versions(scan) == {1, 2}
    assert (scan["m"].versions[2].path / "model.onnx").read_bytes() == b"two"

    delete(s3_server, bucket, "m/1/model.onnx")
    delete(s3_server, bucket, "m/1/extra/vocab.txt")
    scan = source.scan()
    assert versions(scan) == {2}
    assert not folder.exists()


def test_a_changed_version_is_downloaded_again(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    put(s3_server, bucket, "m/1/model.onnx", b"first")
    source = source_for(s3_server, bucket, tmp_path)
    before = source.scan()["m"].versions[1]
    put(s3_server, bucket, "m/1/model.onnx", b"second!")
    after = source.scan()["m"].versions[1]
    assert (after.path / "model.onnx").read_bytes() == b"second!"
    assert after.fingerprint != before.fingerprint  # the manager reloads it


def test_a_model_removed_from_the_store_leaves_the_cache(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    put(s3_server, bucket, "a/1/model.onnx", b"a")
    put(s3_server, bucket, "b/1/model.onnx", b"b")
    source = source_for(s3_server, bucket, tmp_path)
    assert set(source.scan()) == {"a", "b"}
    delete(s3_server, bucket, "b/1/model.onnx")
    assert set(source.scan()) == {"a"}
    assert not (source.root / "b").exists()


def test_a_version_missing_a_file_its_manifest_names_is_withheld(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    put(s3_server, bucket, "m/1/model.onnx", b"one")
    source = source_for(s3_server, bucket, tmp_path)
    assert versions(source.scan()) == {1}

    # An upload in progress: the manifest is there, the weights not yet.
    put(s3_server, bucket, f"m/2/{MANIFEST}", manifest({"model.onnx": b"two", "w.bin": b"w"}))
    put(s3_server, bucket, "m/2/model.onnx", b"two")
    scan = source.scan()
    assert versions(scan) == {1}  # the previous version keeps serving
    assert "w.bin" in scan["m"].withheld[2]
    assert "incomplete" in scan["m"].withheld[2]
    assert not (source.root / "m" / "2").exists()

    put(s3_server, bucket, "m/2/w.bin", b"w")
    scan = source.scan()
    assert versions(scan) == {1, 2}
    assert scan["m"].withheld == {}
    # The manifest is the store's business: the loader never sees it.
    assert sorted(p.name for p in scan["m"].versions[2].path.iterdir()) == ["model.onnx", "w.bin"]


def test_a_size_or_checksum_other_than_the_manifest_says_is_withheld(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    put(s3_server, bucket, f"m/1/{MANIFEST}", manifest({"model.onnx": 10}))
    put(s3_server, bucket, "m/1/model.onnx", b"short")
    put(s3_server, bucket, f"m/2/{MANIFEST}", manifest({"model.onnx": b"right"}))
    put(s3_server, bucket, "m/2/model.onnx", b"wrong")  # same size, other bytes
    scan = source_for(s3_server, bucket, tmp_path).scan()
    assert versions(scan) == set()
    assert "5 bytes" in scan["m"].withheld[1] and "says 10" in scan["m"].withheld[1]
    assert "SHA-256" in scan["m"].withheld[2]


class _TruncatingStore(ObjectStore):
    """A store whose listing promises more bytes than the object has (a torn upload)."""

    def list(self) -> list[StoredObject]:
        return [dataclasses.replace(o, size=o.size + 1) for o in super().list()]


class _OtherEtagStore(ObjectStore):
    def list(self) -> list[StoredObject]:
        return [dataclasses.replace(o, etag="0" * 32) for o in super().list()]


@pytest.mark.parametrize(
    ("store_class", "expected"),
    [(_TruncatingStore, "4 bytes downloaded, the listing says 5"), (_OtherEtagStore, "ETag")],
)
def test_bytes_other_than_the_listing_promised_are_withheld(
    s3_server: S3Server, bucket: str, tmp_path: Path, store_class: type, expected: str
) -> None:
    put(s3_server, bucket, "m/1/model.onnx", b"data")
    store = store_class(f"s3://{bucket}/{PREFIX}", client=s3_server.client())
    source = ObjectStoreSource(store, tmp_path)
    scan = source.scan()
    assert versions(scan) == set()
    assert expected in scan["m"].withheld[1]
    assert not any((source.root / "m").iterdir())


def test_an_unreachable_store_keeps_the_cache_and_says_so(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    put(s3_server, bucket, "m/1/model.onnx", b"one")
    assert versions(source_for(s3_server, bucket, tmp_path).scan()) == {1}

    # A restart while the store is down: the cache serves what it holds.
    nowhere = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )
    down = ObjectStoreSource(ObjectStore(f"s3://{bucket}/{PREFIX}", client=nowhere), tmp_path)
    scan = down.scan()
    assert versions(scan) == {1}
    assert (scan["m"].versions[1].path / "model.onnx").read_bytes() == b"one"
    degraded = down.degraded()
    assert degraded is not None and f"s3://{bucket}/{PREFIX}" in degraded
    assert "cannot list" in degraded and "serving the cached models" in degraded

    # Back again: the notice goes, and what changed meanwhile comes in.
    put(s3_server, bucket, "m/2/model.onnx", b"two")
    down.store._client = s3_server.client()
    assert versions(down.scan()) == {1, 2}
    assert down.degraded() is None


def test_keys_outside_the_layout_are_ignored(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    put(s3_server, bucket, "README.md", b"beside the models")
    put(s3_server, bucket, ".hidden/1/model.onnx", b"x")
    put(s3_server, bucket, "m/1/model.onnx", b"one")
    source = source_for(s3_server, bucket, tmp_path)
    assert set(source.scan()) == {"m"}


def test_open_model_repository_caches_under_the_state_dir(tmp_path: Path) -> None:
    opened = open_model_repository("s3://bucket/some/prefix", tmp_path)
    assert opened.folder.is_relative_to(tmp_path / "object-store")
    assert opened.degraded() is None
    folder = open_model_repository(tmp_path, tmp_path / "state")
    assert folder.folder == tmp_path


def test_repository_urls_are_checked() -> None:
    assert check_repository_url("s3://bucket/prefix") is None
    problem = check_repository_url("s3:///prefix")
    assert problem is not None and "expected s3://bucket/prefix" in problem
