"""OpenAI's videos API (``/v1/videos``), as SGLang, vLLM-Omni, FastVideo and Dynamo serve it,
over the same requests as the RunComfy routes: one table, one submit path (``admit`` and
``submit``, with their keys, limits, idempotency and deadlines), one worker queue.

``POST /v1/videos`` takes multipart (what the ``openai`` SDK sends: ``input_reference`` as a file,
or ``input_reference[image_url]``) or JSON (``input_reference: {"image_url": ...}``). ``size`` and
``seconds`` map to the model's nearest bucket and frame count (:mod:`framecast.api.video_params`);
any other field is the model's own, by its RunComfy name (``seed``, ``num_inference_steps``...).
Errors are in OpenAI's shape (:mod:`framecast.api.openai_errors`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from framecast import states
from framecast.api.admission import IdempotencyKey, admit
from framecast.api.auth import Owner
from framecast.api.bodies import OffLoopJSONRoute
from framecast.api.deadlines import StartTimeout
from framecast.api.errors import describe_validation_errors
from framecast.api.openai_errors import openai_responses
from framecast.api.routes.models import submit
from framecast.api.routes.requests import request_not_found
from framecast.api.services import AppServices, BaseUrl, Services
from framecast.api.video_params import BadParameter, model_fields
from framecast.api.video_views import Video, VideoDeleted, VideoPage, video_object
from framecast.contract.errors import ErrorCode
from framecast.errors import FramecastError
from framecast.models import ModelInput, ModelSpec
from framecast.queue.jobs import Job
from framecast.queue.listing import BadCursor, list_after
from framecast.queue.retention import files_of
from framecast.states import Status
from framecast.storage import LocalStorage

router = APIRouter(tags=["videos (OpenAI)"], route_class=OffLoopJSONRoute)

OPENAI_FIELDS = ("prompt", "model", "seconds", "size", "input_reference")
MAX_FORM_FIELDS = 100

_ERRORS = openai_responses(
    {
        400: "Invalid input, with `param` naming it (framecast's other routes answer 422).",
        401: "A missing, unknown or revoked key (the SDK's AuthenticationError).",
        404: "No video with this id for this key.",
        429: "A limit of this key (see the submit routes); `Retry-After` says when to retry.",
    }
)
_ERRORS[429]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}

_TEXT = {"type": "string"}
_FIELDS = {
    "prompt": _TEXT,
    "model": _TEXT,
    "seconds": {**_TEXT, "description": "Seconds, e.g. 4."},
    "size": {**_TEXT, "description": "WIDTHxHEIGHT, e.g. 1280x720."},
}
_CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["prompt"],
                    "properties": {
                        **_FIELDS,
                        "input_reference": {"type": "string", "format": "binary"},
                    },
                    "additionalProperties": {
                        "description": "The model's own fields, by their RunComfy names "
                        "(seed, num_inference_steps, ...); non-string ones as JSON text."
                    },
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["prompt"],
                    "properties": {
                        **_FIELDS,
                        "input_reference": {
                            "type": "object",
                            "properties": {
                                "image_url": {**_TEXT, "description": "http(s) URL or data: URI."}
                            },
                        },
                    },
                    "additionalProperties": {
                        "description": "The model's own fields, by their RunComfy names."
                    },
                }
            },
        },
    }
}


def _bad(
    param: str | None, message: str, code: ErrorCode = ErrorCode.INVALID_INPUT
) -> FramecastError:
    return FramecastError(message, code=code, status=400, param=param)


@dataclass(frozen=True)
class Upload:
    data: bytes
    content_type: str


@dataclass(frozen=True)
class CreateVideo:
    """A ``POST /v1/videos`` body, multipart or JSON, before it meets a model."""

    prompt: Any = None
    model: str | None = None
    size: str | None = None
    seconds: str | None = None
    image_url: str | None = None
    upload: Upload | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """The model's own fields, by their RunComfy names."""


def _text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _bad(name, f"{name} must be a string")
    return str(value)


def _from_json(body: Any) -> CreateVideo:
    if not isinstance(body, dict):
        raise _bad(None, "the body must be a JSON object (or multipart/form-data)")
    reference = body.get("input_reference")
    image_url = None
    if isinstance(reference, dict):
        if "file_id" in reference:
            raise _bad(
                "input_reference",
                "input_reference.file_id is not supported here: upload the image as "
                "input_reference, or give input_reference.image_url",
            )
        image_url = reference.get("image_url")
    elif reference is not None:
        image_url = reference  # a bare URL, as some servers take it
    if image_url is not None and not isinstance(image_url, str):
        raise _bad("input_reference", "input_reference.image_url must be a URL string")
    return CreateVideo(
        prompt=body.get("prompt"),
        model=_text("model", body.get("model")),
        size=_text("size", body.get("size")),
        seconds=_text("seconds", body.get("seconds")),
        image_url=image_url,
        extra={k: v for k, v in body.items() if k not in OPENAI_FIELDS},
    )


async def _from_form(form: FormData, services: Services) -> CreateVideo:
    values: dict[str, Any] = {}
    upload = None
    image_url = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name != "input_reference":
                raise _bad(name, f"only input_reference may be a file, not {name[:40]}")
            upload = await _read_upload(value, services.settings.max_image_bytes)
        elif name == "input_reference[image_url]":
            image_url = value
        elif name == "input_reference[file_id]":
            raise _bad(
                "input_reference",
                "input_reference.file_id is not supported here: "
                "upload the image as input_reference, or give input_reference.image_url",
            )
        else:
            values[name] = value
    return CreateVideo(
        prompt=values.get("prompt"),
        model=values.get("model"),
        size=values.get("size"),
        seconds=values.get("seconds"),
        image_url=image_url or values.get("input_reference"),
        upload=upload,
        extra={k: v for k, v in values.items() if k not in OPENAI_FIELDS},
    )


async def _read_upload(file: UploadFile, max_bytes: int) -> Upload:
    data = await file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _bad(
            "input_reference",
            f"input_reference is larger than the {max_bytes / 2**20:g} MB limit; use a smaller "
            "or more compressed image",
            code=ErrorCode.IMAGE_TOO_LARGE,
        )
    return Upload(data, file.content_type or "application/octet-stream")


def _form_value(properties: dict[str, Any], name: str, raw: str) -> Any:
    """A multipart field's text as the model's field takes it: as it is for a string field,
    else read as JSON (``42``, ``true``, ``[{"path": "style"}]``), so that the strict input
    schema sees a number, a boolean, a list."""
    schema = properties.get(name, {})
    kinds = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
    if "string" in kinds:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _model(services: Services, name: str | None) -> ModelSpec:
    wanted = name or services.settings.default_model or services.models[0].id
    for spec in services.models:
        if spec.id == wanted:
            return spec
    served = ", ".join(spec.id for spec in services.models)
    raise FramecastError(
        f"model '{wanted[:200]}' is not served here; models: {served}",
        code=ErrorCode.MODEL_NOT_FOUND,
        status=400,
        param="model",
    )


def _input(spec: ModelSpec, create: CreateVideo, form: bool) -> ModelInput:
    """The model's own input for ``create``: a 400 naming the field when it does not fit."""
    extra = dict(create.extra)
    if form and extra:
        properties = spec.input.model_json_schema().get("properties", {})
        extra = {k: _form_value(properties, k, v) for k, v in extra.items()}
    try:
        fields = {**extra, **model_fields(spec, create.size, create.seconds, extra)}
    except BadParameter as exc:
        raise _bad(exc.param, exc.message) from None
    if create.prompt is None:
        raise _bad("prompt", "prompt is required: what the video shows and how it moves")
    fields["prompt"] = create.prompt
    image_field = spec.input.image_field
    if create.upload is not None:
        # As a data: URI: the request row keeps only its head (ModelInput.stored), the bytes
        # go to the store once, and an Idempotency-Key's hash covers the image itself.
        encoded = base64.b64encode(create.upload.data).decode()
        fields[image_field] = f"data:{create.upload.content_type};base64,{encoded}"
    elif create.image_url is not None:
        fields[image_field] = create.image_url
    elif image_field not in fields:
        raise _bad(
            "input_reference",
            f"{spec.id} makes a video from an image: give input_reference (an image file "
            'upload, or {"image_url": "https://..."} with a URL or a data: URI)',
            code=ErrorCode.MISSING_INPUT_REFERENCE,
        )
    try:
        return spec.input.model_validate(fields)
    except ValidationError as exc:
        errors = [dict(e) for e in exc.errors()]
        details = describe_validation_errors(errors, spec.fields)
        raise _bad(details[0]["field"], "; ".join(d["message"] for d in details)) from None


@router.post("/v1/videos", response_model=Video, responses=_ERRORS, openapi_extra=_CREATE_BODY)
async def create_video(
    request: Request,
    owner: Owner,
    services: AppServices,
    base_url: BaseUrl,
    key: IdempotencyKey,
    start_timeout: StartTimeout,
) -> JSONResponse:
    """Create a video from an image: OpenAI's ``videos.create`` (multipart or JSON)."""
    content_type = request.headers.get("content-type", "")
    form = content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded"))
    if form:
        async with request.form(max_files=1, max_fields=MAX_FORM_FIELDS) as data:
            create = await _from_form(data, services)
    else:
        try:
            body = await request.json()
        except ValueError:
            raise _bad(None, "the body must be JSON or multipart/form-data") from None
        create = _from_json(body)
    spec = _model(services, create.model)
    model_input = _input(spec, create, form)
    image = create.upload.data if create.upload is not None else None
    answer = await admit(
        request,
        model=spec.id,
        body=model_input,
        owner=owner,
        services=services,
        base_url=base_url,
        key=key,
        wait=None,
        make=lambda request_id, guard: submit(
            spec,
            model_input,
            owner,
            services,
            base_url,
            None,
            request_id,
            guard,
            start_timeout,
            image=image,
        ),
    )
    request_id = json.loads(bytes(answer.body))["request_id"]
    job = await run_in_threadpool(_owned, services, request_id, owner)
    replayed = {k: v for k, v in answer.headers.items() if k.lower() == "idempotent-replayed"}
    return JSONResponse(_video(services, job).model_dump(mode="json"), headers=replayed)


def _owned(services: Services, video_id: str, owner: str) -> Job:
    job = services.jobs.get(video_id, owner)
    if job is None:
        raise request_not_found(video_id)
    return job


def _video(services: Services, job: Job) -> Video:
    spec = next((s for s in services.models if s.id == job.model), None)
    return video_object(job, spec, services.settings.retention)


@router.get("/v1/videos/{video_id}", response_model=Video, responses=_ERRORS)
def retrieve_video(video_id: str, owner: Owner, services: AppServices) -> JSONResponse:
    """The video's state: OpenAI's ``videos.retrieve`` (what ``create_and_poll`` polls)."""
    job = _owned(services, video_id, owner)
    # The SDK's poll waits this long between reads: the workers' own polling period.
    poll_ms = max(100, round(services.settings.poll_seconds * 1000))
    return JSONResponse(
        _video(services, job).model_dump(mode="json"),
        headers={"openai-poll-after-ms": str(poll_ms)},
    )


@router.get("/v1/videos", response_model=VideoPage, responses=_ERRORS)
def list_videos(
    owner: Owner,
    services: AppServices,
    after: Annotated[
        str | None, Query(max_length=64, description="The last id of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
) -> VideoPage:
    """This key's videos (every request, however it was made), newest first by default."""
    try:
        page = list_after(services.db, owner, limit=limit, after=after, ascending=order == "asc")
    except BadCursor:
        raise _bad("after", f"after must be the id of one of your videos; got {after!r}") from None
    videos = [_video(services, job) for job in page.jobs]
    return VideoPage(
        data=videos,
        first_id=videos[0].id if videos else None,
        last_id=videos[-1].id if videos else None,
        has_more=page.has_more,
    )


@router.get(
    "/v1/videos/{video_id}/content",
    response_model=None,
    responses={200: {"content": {"video/mp4": {}, "image/jpeg": {}}}, **_ERRORS},
)
def video_content(
    video_id: str,
    owner: Owner,
    services: AppServices,
    variant: Annotated[
        Literal["video", "thumbnail", "spritesheet"],
        Query(description="video: the MP4; thumbnail: its poster frame (JPEG)."),
    ] = "video",
) -> Response:
    """The MP4, or its poster frame: OpenAI's ``videos.download_content``."""
    job = _owned(services, video_id, owner)
    if variant == "spritesheet":
        raise _bad("variant", "variant spritesheet is not made here; ask for video or thumbnail")
    if job.status is not Status.COMPLETED or job.result is None:
        raise _bad(
            None,
            f"video {job.id} is {video_object(job, None, None).status}, not completed: poll "
            "GET /v1/videos/{id} until it is",
            code=ErrorCode.VIDEO_NOT_READY,
        )
    if job.data_removed_at is not None:
        raise FramecastError(
            f"the files of video {job.id} were deleted after the retention period "
            "(FRAMECAST_RETENTION)",
            code=ErrorCode.VIDEO_EXPIRED,
            status=404,
        )
    key = job.result.video_key if variant == "video" else job.result.poster_key
    media = "video/mp4" if variant == "video" else "image/jpeg"
    storage = services.storage
    if isinstance(storage, LocalStorage):
        return FileResponse(storage.path(key), media_type=media)  # Range requests included
    return Response(storage.get_bytes(key), media_type=media)


@router.delete("/v1/videos/{video_id}", response_model=VideoDeleted, responses=_ERRORS)
def delete_video(video_id: str, owner: Owner, services: AppServices) -> VideoDeleted:
    """Cancel it if it has not finished, delete its files, and forget it: every route answers
    404 for it afterwards (the RunComfy ones too)."""
    job = _owned(services, video_id, owner)
    if job.status not in states.TERMINAL:
        services.jobs.cancel(job.id, owner)  # a running one stops at its next step
    if not services.jobs.delete(job.id, owner):
        raise request_not_found(video_id)
    done = services.jobs.get(job.id)
    if done is not None and done.status in states.TERMINAL:
        for stored in files_of(done):
            services.storage.delete(stored)
        services.jobs.mark_data_removed(done.id)
    # Still running: the retention sweep deletes its files once it has stopped.
    return VideoDeleted(id=job.id)
