"""Deleting old inputs and outputs (``FRAMECAST_RETENTION``).

Workers run the sweeps now and then while idle: :func:`sweep` (``FRAMECAST_RETENTION``) and
:func:`sweep_orphan_inputs` (always: images whose request was never recorded).

Files go first, then the request is marked: a crash in between leaves a request whose files
are partly gone but which is still unmarked, and the next sweep deletes the rest (deleting a
missing file is not an error) and marks it. The request keeps its status and metadata; its
result says the files were removed instead of handing out links that would fail.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select

from framecast import states
from framecast.db import requests, utcnow
from framecast.queue.jobs import Job, JobStore
from framecast.storage import Storage

log = logging.getLogger("framecast.queue.retention")


def files_of(job: Job) -> list[str]:
    keys = [job.image_key]
    if job.result is not None:
        keys += job.result.files
    return keys


def sweep(jobs: JobStore, storage: Storage, retention: dt.timedelta, batch: int = 100) -> int:
    """Delete the files of requests finished longer than ``retention`` ago; return how many."""
    removed = 0
    cutoff = utcnow() - retention
    while True:
        due = jobs.finished_before(cutoff, limit=batch)
        for job in due:
            for key in files_of(job):
                storage.delete(key)
            if jobs.mark_data_removed(job.id):
                removed += 1
        if len(due) < batch:
            break
    if removed:
        log.info("retention: removed the files of %d finished request(s)", removed)
    return removed


def sweep_deleted(jobs: JobStore, storage: Storage, batch: int = 100) -> int:
    """Delete the files of requests deleted by their owner (``DELETE /v1/videos/{id}``) while
    they were still running, once they have stopped; return how many."""
    with jobs.engine.connect() as conn:
        ids = (
            conn.execute(
                select(requests.c.id)
                .where(
                    requests.c.deleted_at.is_not(None),
                    requests.c.status.in_([s.value for s in states.TERMINAL]),
                    requests.c.data_removed_at.is_(None),
                )
                .limit(batch)
            )
            .scalars()
            .all()
        )
    removed = 0
    for request_id in ids:
        job = jobs.get(request_id)
        if job is None:
            continue
        for key in files_of(job):
            storage.delete(key)
        removed += jobs.mark_data_removed(job.id)
    return removed


INPUTS = "inputs/"


def sweep_orphan_inputs(
    jobs: JobStore, storage: Storage, grace: dt.timedelta, batch: int = 500
) -> int:
    """Delete stored input images that no request refers to and that are older than ``grace``;
    return how many.

    The API stores the image before it records the request, so an API that dies in between
    leaves an image nobody will ever ask for. ``grace`` must outlast that gap (a submit in
    progress), never a request's life: a recorded request keeps its image, queued or not.
    """
    cutoff = utcnow() - grace
    removed = 0
    old: list[str] = []
    for stored in storage.list_files(INPUTS):
        if stored.modified < cutoff:
            old.append(stored.key)
        if len(old) >= batch:
            removed += _delete_unreferenced(jobs, storage, old)
            old = []
    if old:
        removed += _delete_unreferenced(jobs, storage, old)
    if removed:
        log.info("retention: removed %d stored input(s) that had no request", removed)
    return removed


def _delete_unreferenced(jobs: JobStore, storage: Storage, keys: list[str]) -> int:
    # The API files each image under its request's id (inputs/<id>/image.png): one look-up by
    # the indexed id settles almost every key; only what that leaves is matched by image_key.
    by_id = {key.split("/")[1]: key for key in keys if key.count("/") >= 2}
    with jobs.engine.connect() as conn:
        known = {
            row.image_key
            for row in conn.execute(
                select(requests.c.image_key).where(requests.c.id.in_(list(by_id)))
            )
        }
        unmatched = [key for key in keys if key not in known]
        if unmatched:
            known |= set(
                conn.execute(
                    select(requests.c.image_key).where(requests.c.image_key.in_(unmatched))
                ).scalars()
            )
    orphans = [key for key in keys if key not in known]
    for key in orphans:
        log.warning(
            "retention: %s belongs to no request (its submit never finished); deleting it", key
        )
        storage.delete(key)
    return len(orphans)
