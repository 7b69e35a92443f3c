"""The JSON bodies of status, result and cancel answers, built from a :class:`Job`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from framecast.queue.jobs import Job
from framecast.states import Status
from framecast.storage import Storage


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def request_urls(base_url: str, request_id: str) -> dict[str, str]:
    root = f"{base_url.rstrip('/')}/v1/requests/{request_id}"
    return {
        "status_url": f"{root}/status",
        "result_url": f"{root}/result",
        "cancel_url": f"{root}/cancel",
    }


NO_WORKER_NOTE = (
    "no worker serving this model has sent a heartbeat recently; the request stays queued "
    "until one starts"
)


def status_body(
    job: Job, base_url: str, queue_position: int | None, workers_serving: int | None = None
) -> dict[str, Any]:
    urls = request_urls(base_url, job.id)
    body: dict[str, Any] = {
        "request_id": job.id,
        "status": job.status.value,
        "status_url": urls["status_url"],
        "result_url": urls["result_url"],
        "created_at": _iso(job.created_at),
    }
    if job.status is Status.IN_QUEUE:
        body["queue_position"] = queue_position if queue_position is not None else 0
        if workers_serving == 0:
            body["note"] = NO_WORKER_NOTE
    elif job.status is Status.IN_PROGRESS:
        body["started_at"] = _iso(job.started_at)
        body["progress"] = round(job.progress or 0.0, 4)
        body["phase"] = job.phase
        body["step"] = job.step
        body["total_steps"] = job.total_steps
        body["attempt"] = job.attempts
        if job.cancel_requested_at is not None:
            body["cancel_requested"] = True
    else:
        body["started_at"] = _iso(job.started_at)
        body["finished_at"] = _iso(job.finished_at)
    if job.expired:
        # Cancelled by its start deadline (X-Fal-Request-Timeout), never run.
        body["outcome"] = "expired"
        body["note"] = job.error_message
    if job.status is Status.FAILED:
        body["error"] = {
            "code": job.error_code or "failed",
            "message": job.error_message or "the request failed",
        }
    return body


def result_body(
    job: Job,
    base_url: str,
    queue_position: int | None,
    storage: Storage,
    link_ttl: int,
) -> dict[str, Any]:
    if job.status is not Status.COMPLETED or job.result is None:
        return status_body(job, base_url, queue_position)
    result = job.result
    if job.data_removed_at is not None:
        # Retention deleted the files: say so rather than hand out links that 404.
        return {
            "request_id": job.id,
            "status": "completed",
            "output": None,
            "data_removed_at": _iso(job.data_removed_at),
            "note": "the input and output files were deleted after the retention period "
            "(FRAMECAST_RETENTION)",
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
            "metadata": result.metadata,
            "input": job.input,
        }
    video_url, expires = storage.link(result.video_key, base_url, link_ttl)
    poster_url, _ = storage.link(result.poster_key, base_url, link_ttl)
    return {
        "request_id": job.id,
        "status": "completed",
        "output": {"video": video_url},
        "poster": poster_url,
        "links_expire_at": _iso(dt.datetime.fromtimestamp(expires, dt.UTC)),
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "metadata": result.metadata,
        "input": job.input,
    }
