"""Inputs and outputs in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO), for fleets.

Every API node and worker then sees the same files, and clients download outputs straight from
the object store through presigned links. Endpoint, region and credentials come from the usual
AWS settings (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
or ``AWS_PROFILE``); R2 wants ``AWS_REGION=auto``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import boto3  # type: ignore[import-untyped]
import botocore.config  # type: ignore[import-untyped]
from boto3.exceptions import S3UploadFailedError  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from framecast.storage.base import LinkError, Storage, StorageError, StoredFile, check_key

_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}

# SigV4 presigned URLs cannot outlive a week; S3 refuses longer ones only when they are used.
MAX_LINK_TTL = 7 * 24 * 3600

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_DENIED = {
    "403",
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
}
_WRONG_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "301"}


def content_type(key: str) -> str:
    return _CONTENT_TYPES.get(Path(key).suffix.lower(), "application/octet-stream")


def default_client() -> Any:
    """A client configured only by the environment and AWS config files, as the AWS CLI is."""
    config = botocore.config.Config(
        signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"}
    )
    return boto3.session.Session().client("s3", config=config)


class S3Storage(Storage):
    """Objects under ``prefix/`` in ``bucket``; ``client`` is a boto3 S3 client (tests inject one)."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # boto3 clients are thread-safe (sessions are not), so one is shared by the API's threads.
        self.client = client if client is not None else default_client()
        # HEAD answers a bare 404 for a missing bucket too; once anything has worked, it is the key.
        self._bucket_seen = False

    def object_key(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_bytes(self, key: str, data: bytes) -> None:
        name = self.object_key(key)
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=name, Body=data, ContentType=content_type(key)
            )
        except (BotoCoreError, ClientError) as exc:
            self._fail(exc, "write", name)
        self._bucket_seen = True

    def put_file(self, key: str, source: Path) -> None:
        name = self.object_key(key)
        try:
            # upload_file goes multipart above 8 MiB, so long videos are sent in parallel parts.
            self.client.upload_file(
                str(source), self.bucket, name, ExtraArgs={"ContentType": content_type(key)}
            )
        except (BotoCoreError, ClientError) as exc:
            self._fail(exc, "upload", name)
        except S3UploadFailedError as exc:
            # boto3 raises this while handling the ClientError that says what went wrong.
            cause = exc.__cause__ or exc.__context__
            self._fail(cause if isinstance(cause, ClientError) else exc, "upload", name)
        self._bucket_seen = True
        # Same contract as the local store, which moves the file: the caller's copy is gone.
        source.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        name = self.object_key(key)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
            data: bytes = body.read()
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                self._bucket_seen = True
                raise FileNotFoundError(f"s3://{self.bucket}/{name}") from exc
            self._fail(exc, "read", name)
        except BotoCoreError as exc:
            self._fail(exc, "read", name)
        self._bucket_seen = True
        return data

    def exists(self, key: str) -> bool:
        name = self.object_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _code(exc) not in _NOT_FOUND:
                self._fail(exc, "check", name)
            if not self._bucket_seen:
                self._check_bucket()
            return False
        except BotoCoreError as exc:
            self._fail(exc, "check", name)
        self._bucket_seen = True
        return True

    def delete(self, key: str) -> None:
        name = self.object_key(key)
        try:
            # S3 answers 204 whether or not the object was there, which is the idempotence we want.
            self.client.delete_object(Bucket=self.bucket, Key=name)
        except (BotoCoreError, ClientError) as exc:
            self._fail(exc, "delete", name)
        self._bucket_seen = True

    def list_files(self, prefix: str) -> Iterator[StoredFile]:
        name = self.object_key(prefix.rstrip("/")) + "/"
        skip = len(self.prefix) + 1 if self.prefix else 0
        try:
            # One page (up to 1000 keys) at a time, so a large bucket is never held in memory.
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=name
            ):
                for obj in page.get("Contents", []):
                    yield StoredFile(obj["Key"][skip:], obj["LastModified"].astimezone(dt.UTC))
        except (BotoCoreError, ClientError) as exc:
            self._fail(exc, "list", name)
        self._bucket_seen = True

    def link(self, key: str, base_url: str, ttl_seconds: int) -> tuple[str, int]:
        """A presigned GET on the object store itself; ``base_url`` (the API's) plays no part.

        With temporary credentials (an IAM role, STS) the link dies with them, possibly sooner.
        """
        if not 0 < ttl_seconds <= MAX_LINK_TTL:
            raise StorageError(
                f"S3 presigned links last 1 to {MAX_LINK_TTL} seconds (7 days), not {ttl_seconds}: "
                "lower FRAMECAST_LINK_TTL_SECONDS"
            )
        name = self.object_key(key)
        # Read the clock before signing, so the expiry reported is never later than the real one.
        now = int(time.time())
        try:
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": name},
                ExpiresIn=ttl_seconds,
            )
        except (BotoCoreError, ClientError) as exc:
            self._fail(exc, "sign a link to", name)
        return url, now + ttl_seconds

    def serve(self, key: str, expires: int, signature: str) -> NoReturn:
        """Never: this store's links point at the object store, not at the API."""
        raise LinkError("files are served by the object store")

    def _check_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                self._fail(exc, "check", "")
            # Anything else (typically 403 without s3:ListBucket) says nothing about the key.
            return
        except BotoCoreError as exc:
            self._fail(exc, "check", "")
        self._bucket_seen = True

    def _fail(self, exc: Exception, action: str, name: str) -> NoReturn:
        raise StorageError(self._describe(exc, action, name)) from exc

    def _describe(self, exc: Exception, action: str, name: str) -> str:
        where = f"s3://{self.bucket}/{name}" if name else f"s3://{self.bucket}"
        endpoint = getattr(getattr(self.client, "meta", None), "endpoint_url", None) or "AWS S3"
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return (
                f"no usable S3 credentials to {action} {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            )
        if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
            return (
                f"cannot reach the S3 endpoint {endpoint} to {action} {where}: check "
                "AWS_ENDPOINT_URL (MinIO, R2) and the network"
            )
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code == "NoSuchBucket" or (code in _NOT_FOUND and not name):
                return (
                    f"bucket {self.bucket!r} does not exist at {endpoint}: create it, or fix "
                    "FRAMECAST_STORAGE_URL (and AWS_ENDPOINT_URL / AWS_REGION)"
                )
            if code in _DENIED:
                return (
                    f"access denied ({code}) to {action} {where} at {endpoint}: check "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and that they may "
                    f"read, write, delete and list objects in bucket {self.bucket!r}"
                )
            if code in _WRONG_REGION:
                return (
                    f"bucket {self.bucket!r} is in another region than the one configured: set "
                    "AWS_REGION to the bucket's region"
                )
            message = exc.response.get("Error", {}).get("Message", "")
            return f"S3 could not {action} {where} at {endpoint}: {code} {message}".rstrip()
        return f"S3 could not {action} {where} at {endpoint}: {exc}"


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
