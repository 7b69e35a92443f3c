"""Deleting old inputs and outputs (``FRAMECAST_RETENTION``).

Workers run the sweep now and then while idle. Files go first, then the request is marked:
a crash in between leaves a request whose files are partly gone but which is still unmarked,
and the next sweep deletes the rest (deleting a missing file is not an error) and marks it.
The request keeps its status and metadata; its result says the files were removed instead
of handing out links that would fail.
"""

from __future__ import annotations

import datetime as dt
import logging

from framecast.db import utcnow
from framecast.jobs import Job, JobStore
from framecast.storage import Storage

log = logging.getLogger("framecast.retention")


def files_of(job: Job) -> list[str]:
    keys = [job.image_key]
    if job.result:
        keys += [job.result[k] for k in ("video_key", "poster_key") if job.result.get(k)]
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
