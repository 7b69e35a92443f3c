"""A request's answers (:mod:`framecast.contract.requests`), built from its :class:`Job`: what
the status and result routes, the status stream, the listing and webhook deliveries send.

Each builder sets only the fields the request's state has; :func:`wire` sends only those, so
a field a state lacks is absent from the JSON, not null (RunComfy's clients expect that).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel

from framecast.contract.requests import (
    JobError,
    Output,
    RequestResult,
    RequestStatus,
    Submitted,
)
from framecast.queue.jobs import Job
from framecast.states import Status
from framecast.storage import Storage

NO_WORKER_NOTE = (
    "no worker serving this model has sent a heartbeat recently; the request stays queued "
    "until one starts"
)
DATA_REMOVED_NOTE = (
    "the input and output files were deleted after the retention period (FRAMECAST_RETENTION)"
)


def wire(answer: BaseModel) -> dict[str, Any]:
    """The JSON body of an answer: the fields its builder set, and no others."""
    return answer.model_dump(mode="json", exclude_unset=True)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def submitted(base_url: str, request_id: str) -> Submitted:
    """The submit answer: the request's id and its routes."""
    root = f"{base_url.rstrip('/')}/v1/requests/{request_id}"
    return Submitted(
        request_id=request_id,
        status_url=f"{root}/status",
        result_url=f"{root}/result",
        cancel_url=f"{root}/cancel",
    )


def _state(job: Job, queue_position: int | None, workers_serving: int | None) -> dict[str, Any]:
    """The fields of a status that depend on the request's state (the caller validates them)."""
    if job.status is Status.IN_QUEUE:
        queued: dict[str, Any] = {"queue_position": queue_position or 0}
        if workers_serving == 0:
            queued["note"] = NO_WORKER_NOTE
        return queued
    if job.status is Status.IN_PROGRESS:
        running: dict[str, Any] = {
            "started_at": _iso(job.started_at),
            "progress": round(job.progress or 0.0, 4),
            "phase": job.phase,
            "step": job.step,
            "total_steps": job.total_steps,
            "attempt": job.attempts,
        }
        if job.cancel_requested_at is not None:
            running["cancel_requested"] = True
        return running
    ended: dict[str, Any] = {
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }
    if job.expired:
        # Cancelled by its start deadline (X-Fal-Request-Timeout), never run.
        ended["outcome"] = "expired"
        ended["note"] = job.error_message
    if job.status is Status.FAILED:
        ended["error"] = JobError(
            code=job.error_code or "failed", message=job.error_message or "the request failed"
        )
    return ended


def status_body(
    job: Job, base_url: str, queue_position: int | None, workers_serving: int | None = None
) -> RequestStatus:
    """The request's status. ``workers_serving``: how many live workers serve its model (0
    adds a queued request's note; None: not counted)."""
    urls = submitted(base_url, job.id)
    return RequestStatus(
        request_id=job.id,
        status=job.status.value,
        status_url=urls.status_url,
        result_url=urls.result_url,
        created_at=_iso(job.created_at),
        **_state(job, queue_position, workers_serving),
    )


def result_body(
    job: Job,
    base_url: str,
    queue_position: int | None,
    storage: Storage,
    link_ttl: int,
) -> RequestResult | RequestStatus:
    """The result: before the request has completed, its status (so the result can be polled);
    once completed, its outputs as links valid ``link_ttl`` seconds."""
    if job.status is not Status.COMPLETED or job.result is None:
        return status_body(job, base_url, queue_position)
    result = job.result
    ended = {
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "metadata": result.metadata,
        "input": job.input,
    }
    if job.data_removed_at is not None:
        # Retention deleted the files: say so rather than hand out links that 404.
        return RequestResult(
            request_id=job.id,
            status=Status.COMPLETED.value,
            output=None,
            data_removed_at=_iso(job.data_removed_at),
            note=DATA_REMOVED_NOTE,
            **ended,
        )
    video_url, expires = storage.link(result.video_key, base_url, link_ttl)
    poster_url, _ = storage.link(result.poster_key, base_url, link_ttl)
    return RequestResult(
        request_id=job.id,
        status=Status.COMPLETED.value,
        output=Output(video=video_url),
        poster=poster_url,
        links_expire_at=_iso(dt.datetime.fromtimestamp(expires, dt.UTC)),
        **ended,
    )
