"""An S3 (or S3-compatible) bucket as seen by a model repository: listing and verified
downloads, through boto3.

Credentials, region and endpoint come the standard AWS ways (``AWS_ACCESS_KEY_ID``,
``AWS_PROFILE``, ``~/.aws/credentials``, ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for a
compatible store...): boto3 reads them, serval names none.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

SCHEME = "s3://"
_CHUNK = 1 << 20
# A plain ETag is the MD5 of the object; a multipart upload's is "<md5 of md5s>-<parts>",
# and SSE-KMS objects' are opaque: only the plain form can be checked.
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")


class StoreUnreachableError(Exception):
    """The store did not answer (network, credentials, a missing bucket)."""


class IncompleteObjectError(Exception):
    """An object is missing, or its bytes are not those its listing promised."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object of a listing: its key below the repository prefix, size and ETag."""

    key: str
    size: int
    etag: str


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix without slashes at either end)."""
    if not url.startswith(SCHEME):
        raise ValueError(f"{url!r} is not an s3:// URL")
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket: expected s3://bucket/prefix")
    return bucket, prefix.strip("/")


class ObjectStore:
    """One bucket and prefix: lists the objects below it and downloads them verified."""

    def __init__(self, url: str, *, client: Any = None, timeout_s: float = 10.0) -> None:
        self.url = url
        self.bucket, self.prefix = parse_url(url)
        if client is None:
            # Few retries and short timeouts: a poll that cannot reach the store says so and
            # tries again at the next interval, instead of hanging the poll.
            config = Config(
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
                retries={"max_attempts": 2, "mode": "standard"},
            )
            client = boto3.session.Session().client("s3", config=config)
        self._client = client

    def list(self) -> list[StoredObject]:
        """Every object below the prefix, keys relative to it (folder markers left out)."""
        start = f"{self.prefix}/" if self.prefix else ""
        objects = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    key = item["Key"][len(start) :]
                    if key and not key.endswith("/"):
                        etag = str(item.get("ETag", "")).strip('"')
                        objects.append(StoredObject(key, int(item["Size"]), etag))
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnreachableError(f"cannot list {self.url}: {_describe(exc)}") from exc
        return objects

    def download(self, item: StoredObject, target: Path) -> str:
        """Write ``item`` to ``target``; check its size and (plain ETag) MD5 against the
        listing. Returns the file's SHA-256 (hex), for a manifest to compare."""
        full_key = f"{self.prefix}/{item.key}" if self.prefix else item.key
        md5, sha256, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=full_key)
            body = response["Body"]
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                while chunk := body.read(_CHUNK):
                    md5.update(chunk)
                    sha256.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise IncompleteObjectError(f"{item.key} is listed but gone") from exc
            raise StoreUnreachableError(f"cannot read {item.key}: {_describe(exc)}") from exc
        except BotoCoreError as exc:
            raise StoreUnreachableError(f"cannot read {item.key}: {_describe(exc)}") from exc
        if size != item.size:
            raise IncompleteObjectError(
                f"{item.key}: {size} bytes downloaded, the listing says {item.size}"
            )
        if _MD5_ETAG.match(item.etag) and md5.hexdigest() != item.etag:
            raise IncompleteObjectError(f"{item.key}: its MD5 is not its ETag {item.etag}")
        return sha256.hexdigest()


def _describe(exc: Exception) -> str:
    return " ".join(str(exc).split())
