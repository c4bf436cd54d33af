"""A local S3-compatible server for tests: moto in server mode, on a free loopback port."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from serval.testing import free_port

moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    endpoint: str

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def env(self) -> dict[str, str]:
        """What a serval process needs to reach it (the standard AWS variables)."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": self.endpoint}


@contextlib.contextmanager
def running_s3() -> Iterator[S3Server]:
    """moto's S3 server on a free port, stopped on exit."""
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@contextlib.contextmanager
def new_bucket(server: S3Server) -> Iterator[str]:
    """A bucket of its own (for one test), emptied and removed on exit."""
    name = f"serval-{uuid.uuid4().hex[:16]}"
    client = server.client()
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        _empty_and_remove(client, name)


def _empty_and_remove(client: Any, name: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", ()):
            client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


def manifest(files: dict[str, bytes | int]) -> bytes:
    """A version's .serval-manifest.json naming ``files`` (bytes: size and SHA-256; an int:
    that size only)."""
    entries: dict[str, dict[str, object]] = {}
    for name, content in files.items():
        if isinstance(content, int):
            entries[name] = {"size": content}
        else:
            entries[name] = {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    return json.dumps({"files": entries}).encode()
