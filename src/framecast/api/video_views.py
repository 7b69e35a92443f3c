"""OpenAI's Video object, built from a request (:class:`~framecast.queue.jobs.Job`).

Any request is a video: one made with ``POST /v1/models/{id}`` reads here too (one request
table). OpenAI has no cancelled status: a cancelled request reads as ``failed`` with the error
code ``cancelled``, or ``expired`` when its start deadline passed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel

from framecast.api.video_params import produced
from framecast.models import ModelSpec
from framecast.queue.jobs import Job
from framecast.states import Status

VideoStatus = Literal["queued", "in_progress", "completed", "failed"]

_STATUS: Mapping[Status, VideoStatus] = {
    Status.IN_QUEUE: "queued",
    Status.IN_PROGRESS: "in_progress",
    Status.COMPLETED: "completed",
    Status.FAILED: "failed",
    Status.CANCELLED: "failed",
}


class VideoError(BaseModel):
    code: str
    message: str


class Video(BaseModel):
    """The fields of OpenAI's Video object (``openai.types.Video``)."""

    id: str
    object: Literal["video"] = "video"
    status: VideoStatus
    progress: int
    model: str
    size: str
    seconds: str
    prompt: str | None
    created_at: int
    completed_at: int | None
    expires_at: int | None
    """When the files go (FRAMECAST_RETENTION after it finished); None while it runs or
    where files are kept for good."""
    error: VideoError | None
    remixed_from_video_id: None = None


class VideoPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


def _unix(value: dt.datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def _error(job: Job) -> VideoError | None:
    if job.status is Status.FAILED:
        return VideoError(
            code=job.error_code or "failed", message=job.error_message or "the request failed"
        )
    if job.status is Status.CANCELLED:
        if job.expired:
            return VideoError(code="expired", message=job.error_message or "expired")
        return VideoError(code="cancelled", message="the request was cancelled")
    return None


def _progress(job: Job) -> int:
    if job.status is Status.COMPLETED:
        return 100
    if job.status is Status.IN_PROGRESS:
        return min(99, round((job.progress or 0.0) * 100))  # 100 only once it is there
    return 0


def video_object(job: Job, spec: ModelSpec | None, retention: dt.timedelta | None) -> Video:
    made = job.result.metadata if job.result is not None else None
    shape = produced(spec, job.input, made)
    finished = job.finished_at if job.status not in (Status.IN_QUEUE, Status.IN_PROGRESS) else None
    prompt = job.input.get("prompt")
    return Video(
        id=job.id,
        status=_STATUS[job.status],
        progress=_progress(job),
        model=job.model,
        size=shape.size if shape is not None else "",
        seconds=shape.seconds if shape is not None else "",
        prompt=prompt if isinstance(prompt, str) else None,
        created_at=int(job.created_at.timestamp()),
        completed_at=_unix(finished),
        expires_at=_unix(finished + retention) if finished and retention else None,
        error=_error(job),
    )
