"""Retention on real databases and local storage: old files go, requests stay and say so."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine, update

from framecast.api.views import result_body
from framecast.db import requests, utcnow
from framecast.jobs import JobStore
from framecast.retention import sweep
from framecast.states import Status
from framecast.storage import LocalStorage

MODEL = "tencent/hunyuan/image-to-video"


def finished(store: JobStore, storage: LocalStorage, name: str, age: dt.timedelta) -> str:
    image = f"inputs/{name}/image.png"
    storage.put_bytes(image, b"png")
    rid = store.submit(owner="o", model=MODEL, input={"prompt": name}, image_key=image).id
    lease = store.claim("w")
    assert lease is not None and lease.request_id == rid
    video, poster = f"outputs/{rid}/video.mp4", f"outputs/{rid}/poster.jpg"
    storage.put_bytes(video, b"mp4")
    storage.put_bytes(poster, b"jpg")
    assert store.complete(
        lease, {"video_key": video, "poster_key": poster, "metadata": {"seed": 1}}
    )
    with store.engine.begin() as conn:
        conn.execute(
            update(requests).where(requests.c.id == rid).values(finished_at=utcnow() - age)
        )
    return rid


def test_sweep_removes_old_files_only_and_the_result_says_so(db: Engine, tmp_path: Path) -> None:
    store = JobStore(db, lease_seconds=30, max_attempts=2)
    storage = LocalStorage(tmp_path / "media", b"secret")
    old = finished(store, storage, "old", dt.timedelta(days=8))
    new = finished(store, storage, "new", dt.timedelta(hours=1))
    queued = store.submit(owner="o", model=MODEL, input={}, image_key="inputs/q/image.png").id
    storage.put_bytes("inputs/q/image.png", b"png")

    assert sweep(store, storage, dt.timedelta(days=7)) == 1
    assert not storage.exists("inputs/old/image.png")
    assert not storage.exists(f"outputs/{old}/video.mp4")
    assert storage.exists(f"outputs/{new}/video.mp4") and storage.exists("inputs/q/image.png")

    job = store.get(old)
    assert job is not None and job.status is Status.COMPLETED and job.data_removed_at
    body = result_body(job, "http://x", None, storage, 60)
    assert body["output"] is None and "retention" in body["note"]
    assert body["metadata"] == {"seed": 1}
    fresh = store.get(new)
    assert fresh is not None
    assert result_body(fresh, "http://x", None, storage, 60)["output"]["video"].startswith(
        "http://x/"
    )
    assert store.get(queued) is not None

    # Running again (another worker, or after a crash) changes nothing and fails on nothing.
    assert sweep(store, storage, dt.timedelta(days=7)) == 0


def test_sweep_pages_through_many(db: Engine, tmp_path: Path) -> None:
    store = JobStore(db, lease_seconds=30, max_attempts=2)
    storage = LocalStorage(tmp_path / "media", b"secret")
    for i in range(7):
        finished(store, storage, f"r{i}", dt.timedelta(days=2))
    assert sweep(store, storage, dt.timedelta(days=1), batch=3) == 7
