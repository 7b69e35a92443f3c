"""Retention on real databases and local storage: old files go, requests stay and say so."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from sqlalchemy import Engine, update

from framecast.db import requests, utcnow
from framecast.queue.jobs import JobStore
from framecast.queue.results import VideoResult
from framecast.queue.retention import sweep, sweep_orphan_inputs
from framecast.queue.views import result_body, wire
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
        lease, VideoResult(video_key=video, poster_key=poster, metadata={"seed": 1})
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
    body = wire(result_body(job, "http://x", None, storage, 60))
    assert body["output"] is None and "retention" in body["note"]
    assert body["metadata"] == {"seed": 1}
    fresh = store.get(new)
    assert fresh is not None
    links = wire(result_body(fresh, "http://x", None, storage, 60))
    assert links["output"]["video"].startswith("http://x/")
    assert store.get(queued) is not None

    # Running again (another worker, or after a crash) changes nothing and fails on nothing.
    assert sweep(store, storage, dt.timedelta(days=7)) == 0


def test_sweep_pages_through_many(db: Engine, tmp_path: Path) -> None:
    store = JobStore(db, lease_seconds=30, max_attempts=2)
    storage = LocalStorage(tmp_path / "media", b"secret")
    for i in range(7):
        finished(store, storage, f"r{i}", dt.timedelta(days=2))
    assert sweep(store, storage, dt.timedelta(days=1), batch=3) == 7


def age_file(storage: LocalStorage, key: str, age: dt.timedelta) -> None:
    when = (utcnow() - age).timestamp()
    os.utime(storage.path(key), (when, when))


def test_orphan_inputs_go_after_the_grace_period_and_recorded_ones_stay(
    db: Engine, tmp_path: Path
) -> None:
    """An API killed between storing the image and recording the request leaves an image no
    request refers to: the sweep deletes it once older than the grace period, and nothing else."""
    store = JobStore(db, lease_seconds=30, max_attempts=2)
    storage = LocalStorage(tmp_path / "media", b"secret")
    hour = dt.timedelta(hours=1)
    queued = store.submit(owner="o", model=MODEL, input={}, image_key="inputs/tmp/x.png")
    recorded = f"inputs/{queued.id}/image.png"
    with db.begin() as conn:  # filed under its id, as the API does
        conn.execute(update(requests).where(requests.c.id == queued.id).values(image_key=recorded))
    elsewhere = "inputs/named-by-hand/image.png"  # a request whose image is not under its id
    store.submit(owner="o", model=MODEL, input={}, image_key=elsewhere)
    orphan = "inputs/0b7c1f52-dead-4000-8000-000000000000/image.png"
    fresh_orphan = "inputs/0b7c1f52-beef-4000-8000-000000000000/image.png"  # a submit in progress
    for key in (recorded, elsewhere, orphan, fresh_orphan):
        storage.put_bytes(key, b"png")
    for key in (recorded, elsewhere, orphan):
        age_file(storage, key, 3 * hour)

    assert sweep_orphan_inputs(store, storage, hour, batch=2) == 1
    assert not storage.exists(orphan)
    assert storage.exists(recorded) and storage.exists(elsewhere) and storage.exists(fresh_orphan)
    assert not (storage.root / "inputs" / orphan.split("/")[1]).exists()  # its folder too
    assert sweep_orphan_inputs(store, storage, hour) == 0
