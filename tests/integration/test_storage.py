"""The storage contract, held by the local folder and by S3 (a real moto server on loopback)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from framecast.storage import LinkError, LocalStorage, Storage, StorageError, open_storage
from framecast.storage.s3 import S3Storage

SECRET = b"test-secret"
PREFIX = "fleet/a"
VIDEO = "outputs/req1/video.mp4"
POSTER = "outputs/req1/poster.jpg"
IMAGE = "inputs/req1/image.png"


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return open_storage(None, local_root=tmp_path / "media", secret=SECRET)
    _, bucket = request.getfixturevalue("s3_bucket")
    return open_storage(f"s3://{bucket}/{PREFIX}", local_root=tmp_path / "media", secret=SECRET)


def s3_client() -> Any:
    import boto3  # type: ignore[import-untyped]

    return boto3.session.Session().client("s3")


def object_keys(bucket: str) -> list[str]:
    listing = s3_client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_open_storage_picks_the_backend(tmp_path: Path, s3_bucket: tuple[str, str]) -> None:
    from framecast.storage import S3Storage

    assert isinstance(open_storage("", local_root=tmp_path, secret=SECRET), LocalStorage)
    store = open_storage(f"s3://{s3_bucket[1]}/{PREFIX}/", local_root=tmp_path, secret=SECRET)
    assert isinstance(store, S3Storage)
    assert (store.bucket, store.prefix) == (s3_bucket[1], PREFIX)


@pytest.mark.parametrize("url", ["ftp://x", "s3://", "s3:bucket", "s3://b/x?y=1", "/srv/media"])
def test_open_storage_rejects_other_urls(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"FRAMECAST_STORAGE_URL=s3://bucket/prefix"):
        open_storage(url, local_root=tmp_path, secret=SECRET)


def test_open_storage_keeps_credentials_out_of_the_message(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="AWS_ACCESS_KEY_ID") as caught:
        open_storage("s3://AKIAX:hunter2@bucket/p", local_root=tmp_path, secret=SECRET)
    assert "hunter2" not in str(caught.value)


def test_open_storage_without_boto3_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "framecast.storage.s3", raising=False)
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` fail
    with pytest.raises(StorageError, match=r"framecast\[s3\]"):
        open_storage("s3://bucket", local_root=tmp_path, secret=SECRET)


def test_bytes_round_trip(storage: Storage) -> None:
    storage.put_bytes(IMAGE, b"\x89PNG data")
    assert storage.get_bytes(IMAGE) == b"\x89PNG data"
    storage.put_bytes(IMAGE, b"replaced")
    assert storage.get_bytes(IMAGE) == b"replaced"


def test_exists(storage: Storage) -> None:
    assert not storage.exists(IMAGE)
    storage.put_bytes(IMAGE, b"x")
    assert storage.exists(IMAGE)
    assert not storage.exists("inputs/req1/other.png")


def test_missing_key_is_file_not_found(storage: Storage) -> None:
    with pytest.raises(FileNotFoundError):
        storage.get_bytes("inputs/nobody/image.png")


@pytest.mark.parametrize(
    ("key", "content_type"),
    [(VIDEO, "video/mp4"), (POSTER, "image/jpeg"), (IMAGE, "image/png"), ("x/y.bin", None)],
)
def test_put_file_moves_the_file(
    storage: Storage, tmp_path: Path, key: str, content_type: str | None
) -> None:
    source = tmp_path / "work" / Path(key).name
    source.parent.mkdir()
    source.write_bytes(b"payload " + key.encode())
    storage.put_file(key, source)
    assert not source.exists()
    assert storage.get_bytes(key) == b"payload " + key.encode()
    if isinstance(storage, S3Storage):
        head = s3_client().head_object(Bucket=storage.bucket, Key=f"{PREFIX}/{key}")
        assert head["ContentType"] == (content_type or "application/octet-stream")


def test_put_file_goes_multipart_for_large_files(storage: Storage, tmp_path: Path) -> None:
    data = bytes(range(256)) * (9 * 1024 * 4)  # 9 MiB: above boto3's 8 MiB multipart threshold
    source = tmp_path / "video.mp4"
    source.write_bytes(data)
    storage.put_file(VIDEO, source)
    assert storage.get_bytes(VIDEO) == data
    if isinstance(storage, S3Storage):
        head = s3_client().head_object(Bucket=storage.bucket, Key=f"{PREFIX}/{VIDEO}")
        assert head["ETag"].strip('"').endswith("-2")  # a multipart ETag counts its parts


def test_delete_is_idempotent(storage: Storage, tmp_path: Path) -> None:
    storage.put_bytes(VIDEO, b"v")
    storage.put_bytes(POSTER, b"p")
    storage.delete(VIDEO)
    assert not storage.exists(VIDEO)
    assert storage.exists(POSTER)
    storage.delete(VIDEO)
    storage.delete("outputs/never/video.mp4")
    storage.delete(POSTER)
    assert not storage.exists(POSTER)
    if isinstance(storage, LocalStorage):
        # The emptied request folder goes, and so does outputs/, but never the root itself.
        assert storage.root.is_dir()
        assert list(storage.root.iterdir()) == []


def test_local_delete_keeps_folders_still_in_use(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media", SECRET)
    storage.put_bytes(VIDEO, b"v")
    storage.put_bytes("outputs/req2/video.mp4", b"w")
    storage.delete(VIDEO)
    assert not (storage.root / "outputs/req1").exists()
    assert storage.get_bytes("outputs/req2/video.mp4") == b"w"


def test_keys_land_under_the_prefix(s3_bucket: tuple[str, str], tmp_path: Path) -> None:
    _, bucket = s3_bucket
    open_storage(f"s3://{bucket}/{PREFIX}", local_root=tmp_path, secret=SECRET).put_bytes(
        IMAGE, b"a"
    )
    open_storage(f"s3://{bucket}", local_root=tmp_path, secret=SECRET).put_bytes(VIDEO, b"b")
    open_storage(f"s3://{bucket}//deep//", local_root=tmp_path, secret=SECRET).put_bytes(
        POSTER, b"c"
    )
    assert object_keys(bucket) == [f"deep/{POSTER}", f"{PREFIX}/{IMAGE}", VIDEO]


def test_s3_link_downloads_the_object(s3_bucket: tuple[str, str], tmp_path: Path) -> None:
    _, bucket = s3_bucket
    storage = open_storage(f"s3://{bucket}/{PREFIX}", local_root=tmp_path, secret=SECRET)
    data = bytes(range(256)) * 40
    storage.put_bytes(VIDEO, data)
    before = int(time.time())
    url, expires = storage.link(VIDEO, "http://api.example", 600)
    assert url.startswith(f"{s3_bucket[0]}/{bucket}/{PREFIX}/{VIDEO}?")  # the store, not the API
    assert before + 600 <= expires <= int(time.time()) + 600

    whole = httpx.get(url)
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["content-type"] == "video/mp4"

    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"


def test_s3_link_expires(s3_bucket: tuple[str, str], tmp_path: Path) -> None:
    # moto (5.2) does not enforce presigned-URL expiry: an expired link still answers 200. So the
    # expiry is checked where S3 and R2 enforce it: the signed X-Amz-Date and X-Amz-Expires.
    _, bucket = s3_bucket
    storage = open_storage(f"s3://{bucket}", local_root=tmp_path, secret=SECRET)
    storage.put_bytes(VIDEO, b"v")
    url, expires = storage.link(VIDEO, "http://api.example", 1)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["1"]
    assert "X-Amz-Signature" in query
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs(signed_at.timestamp() + 1 - expires) <= 1


def test_s3_link_ttl_is_bounded(s3_bucket: tuple[str, str], tmp_path: Path) -> None:
    storage = open_storage(f"s3://{s3_bucket[1]}", local_root=tmp_path, secret=SECRET)
    with pytest.raises(StorageError, match="FRAMECAST_LINK_TTL_SECONDS"):
        storage.link(VIDEO, "http://api.example", 8 * 24 * 3600)


def test_local_link_is_signed_for_the_api(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, SECRET)
    url, expires = storage.link(VIDEO, "http://api.example/", 60)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"http://api.example/v1/files/{VIDEO}"
    query = parse_qs(parts.query)
    assert storage.verify(VIDEO, expires, query["signature"][0]) is None


def test_missing_bucket_is_named(s3_bucket: tuple[str, str], tmp_path: Path) -> None:
    storage = open_storage("s3://no-such-bucket-here/p", local_root=tmp_path, secret=SECRET)
    source = tmp_path / "video.mp4"
    source.write_bytes(b"v")
    calls: list[Callable[[], object]] = [
        lambda: storage.put_bytes(IMAGE, b"x"),
        lambda: storage.put_file(VIDEO, source),
        lambda: storage.get_bytes(IMAGE),
        lambda: storage.exists(IMAGE),
        lambda: storage.delete(IMAGE),
    ]
    for call in calls:
        with pytest.raises(StorageError, match=r"'no-such-bucket-here' does not exist") as caught:
            call()
        assert "FRAMECAST_STORAGE_URL" in caught.value.message
    assert source.exists()  # a failed upload leaves the caller's file alone


def test_missing_credentials_are_explained(
    s3_bucket: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    storage = open_storage(f"s3://{s3_bucket[1]}", local_root=tmp_path, secret=SECRET)
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID") as caught:
        storage.put_bytes(IMAGE, b"x")
    assert s3_bucket[1] in caught.value.message


def test_unreachable_endpoint_is_explained(tmp_path: Path, s3_bucket: tuple[str, str]) -> None:
    import boto3
    import botocore.config  # type: ignore[import-untyped]

    from framecast.storage import S3Storage

    # Injected so that one attempt is made: the default client retries with backoff for seconds.
    dead = "http://127.0.0.1:9"  # discard port: nothing listens on loopback
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=dead,
        config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    storage = S3Storage(s3_bucket[1], "p", client=client)
    with pytest.raises(StorageError, match="AWS_ENDPOINT_URL") as caught:
        storage.get_bytes(IMAGE)
    assert dead in caught.value.message
    assert s3_bucket[1] in caught.value.message


def test_local_store_serves_its_own_links(tmp_path: Path) -> None:
    storage = open_storage(None, local_root=tmp_path, secret=SECRET)
    storage.put_bytes(VIDEO, b"0123456789")
    url, expires = storage.link(VIDEO, "http://api.example", 60)
    signature = parse_qs(urlsplit(url).query)["signature"][0]
    response = storage.serve(VIDEO, expires, signature)
    assert response.status_code == 200
    assert response.media_type == "video/mp4"
    assert response.headers["cache-control"].startswith("private, max-age=")
    refusals = [
        (VIDEO, expires, signature + "x", "invalid_signature", 403),
        ("outputs/req1/other.mp4", expires, signature, "invalid_signature", 403),
    ]
    for key, exp, sig, code, status in refusals:
        with pytest.raises(LinkError) as caught:
            storage.serve(key, exp, sig)
        assert (caught.value.code, caught.value.status) == (code, status)
    old, old_expires = storage.link(VIDEO, "http://api.example", -1)
    with pytest.raises(LinkError) as caught:
        storage.serve(VIDEO, old_expires, parse_qs(urlsplit(old).query)["signature"][0])
    assert (caught.value.code, caught.value.status) == ("link_expired", 403)
    storage.delete(VIDEO)
    with pytest.raises(LinkError) as caught:
        storage.serve(VIDEO, expires, signature)
    assert (caught.value.code, caught.value.status) == ("file_not_found", 404)


def test_s3_store_leaves_serving_to_the_bucket(s3_bucket: tuple[str, str], tmp_path: Path) -> None:
    storage = open_storage(f"s3://{s3_bucket[1]}", local_root=tmp_path, secret=SECRET)
    storage.put_bytes(VIDEO, b"v")
    with pytest.raises(LinkError) as caught:
        storage.serve(VIDEO, int(time.time()) + 60, "anything")
    assert (caught.value.code, caught.value.status) == ("file_not_found", 404)


def test_the_package_needs_boto3_only_for_a_bucket() -> None:
    import subprocess

    code = (
        "import sys; import framecast.storage, framecast.api.app, framecast.worker.loop; "
        "assert 'boto3' not in sys.modules and 'framecast.storage.s3' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_list_files_walks_one_folder_with_times(storage: Storage) -> None:
    before = datetime.now(UTC).replace(microsecond=0)  # S3 keeps whole seconds
    for key in (IMAGE, "inputs/req2/image.jpg", VIDEO):
        storage.put_bytes(key, b"x")
    listed = {f.key: f.modified for f in storage.list_files("inputs/")}
    assert sorted(listed) == ["inputs/req1/image.png", "inputs/req2/image.jpg"]
    assert all(before <= modified <= datetime.now(UTC) for modified in listed.values())
    assert list(storage.list_files("nothing-here/")) == []
