"""HunyuanVideo 1.5's input at the API, in-process: each field's rule and the cross-field one,
as 422s that name the field and the rule, in framecast's error shape with RunComfy's beside it.
The I2V model's table and one model's fields sent to the other: test_api_models.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from framecast.models.hunyuan15_i2v import MODEL_ID as MODEL_15
from framecast.queue.registry import WorkerState

from .inprocess import SUBMIT_15, assert_error, client_for, data_uri, make_app, png, services_of

pytestmark = pytest.mark.anyio

# Validation comes before the image is fetched or decoded: any image will do for a 422.
BODY = {"prompt": "p", "image": "data:,"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return make_app(tmp_path_factory.mktemp("api"))


@pytest.mark.parametrize(
    ("fields", "field", "needles"),
    [
        ({"resolution": "720"}, "resolution", ["'480p' or '720p'", "got '720'"]),
        # The I2V model's resolutions are not 1.5's.
        ({"resolution": "360p"}, "resolution", ["'480p' or '720p'", "got '360p'"]),
        (
            {"aspect_ratio": "21:9"},
            "aspect_ratio",
            ["'16:9', '9:16', '1:1', '4:3' or '3:4'", "got '21:9'"],
        ),
        ({"num_frames": 64}, "num_frames", ["4n+1 (5, 9, ..., 241)", "nearest are 61 and 65"]),
        ({"num_frames": 122}, "num_frames", ["4n+1", "nearest are 121 and 125"]),
        ({"num_frames": 245}, "num_frames", ["less than or equal to 241"]),
        ({"num_frames": 1}, "num_frames", ["greater than or equal to 5"]),
        ({"num_frames": 121.0}, "num_frames", ["integer"]),
        ({"num_inference_steps": 0}, "num_inference_steps", ["greater than or equal to 1"]),
        ({"num_inference_steps": 101}, "num_inference_steps", ["less than or equal to 100"]),
        ({"num_inference_steps": 12.0}, "num_inference_steps", ["integer"]),
        ({"guidance_scale": 0.5}, "guidance_scale", ["greater than or equal to 1"]),
        ({"guidance_scale": 20.5}, "guidance_scale", ["less than or equal to 20"]),
        ({"flow_shift": 0}, "flow_shift", ["greater than 0"]),
        ({"flow_shift": 100.5}, "flow_shift", ["less than or equal to 100"]),
        ({"seed": -1}, "seed", ["greater than or equal to 0"]),
        ({"negative_prompt": "x" * 10_001}, "negative_prompt", ["at most 10000 characters"]),
        ({"step_cache": "teacache"}, "step_cache", ["one of 'first_block'", "got 'teacache'"]),
        (
            {"step_cache": "first_block", "step_cache_threshold": 0},
            "step_cache_threshold",
            ["greater than 0"],
        ),
        (
            {"step_cache": "first_block", "step_cache_threshold": 1.5},
            "step_cache_threshold",
            ["less than or equal to 1"],
        ),
    ],
)
async def test_a_field_out_of_its_rule_is_a_422_naming_the_field_and_the_rule(
    client: httpx.AsyncClient, fields: dict[str, Any], field: str, needles: list[str]
) -> None:
    r = await client.post(SUBMIT_15, json={**BODY, **fields})
    body = assert_error(r, 422, "invalid_input")
    error = body["error"]
    assert error["message"].startswith(field), error
    for needle in needles:
        assert needle in error["message"], error
    assert [d["field"] for d in error["details"]] == [field]
    assert [d["loc"] for d in body["detail"]] == [["body", field]]


NEGATIVE_NEEDS_GUIDANCE = "negative_prompt: only has an effect with guidance_scale > 1"
THRESHOLD_NEEDS_CACHE = "step_cache_threshold: only has an effect with a step cache"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"negative_prompt": "blur"}, NEGATIVE_NEEDS_GUIDANCE),
        ({"negative_prompt": "blur", "guidance_scale": 1.0}, NEGATIVE_NEEDS_GUIDANCE),
        ({"step_cache_threshold": 0.1}, THRESHOLD_NEEDS_CACHE),
        ({"step_cache_threshold": 0.1, "step_cache": None}, THRESHOLD_NEEDS_CACHE),
    ],
    ids=["no-guidance", "guidance-1", "no-cache", "cache-null"],
)
async def test_a_field_without_the_one_it_needs_is_a_422_saying_so(
    client: httpx.AsyncClient, fields: dict[str, Any], says: str
) -> None:
    # A distilled checkpoint's default guidance is 1, where the negative prompt is never seen;
    # a threshold without a cache changes nothing. The 422 names the field that needs the other.
    r = await client.post(SUBMIT_15, json={**BODY, **fields})
    body = assert_error(r, 422, "invalid_input")
    assert body["error"]["message"].startswith(says), body
    assert [d["field"] for d in body["error"]["details"]] == [says.partition(":")[0]]


async def test_the_edges_of_each_rule_are_accepted(client: httpx.AsyncClient) -> None:
    image = data_uri(png())
    for fields in (
        {"num_frames": 5, "num_inference_steps": 1, "guidance_scale": 1.0, "flow_shift": 0.01},
        {"num_frames": 241, "num_inference_steps": 100, "guidance_scale": 20.0, "flow_shift": 100},
        {"negative_prompt": "blur", "guidance_scale": 1.01, "resolution": "720p"},
        {"aspect_ratio": "3:4", "resolution": "480p", "seed": 2**63 - 1},
        {"step_cache": "first_block"},
        {"step_cache": "first_block", "step_cache_threshold": 1.0},
        {"step_cache": "first_block", "step_cache_threshold": 1e-6, "guidance_scale": 6.0},
    ):
        r = await client.post(SUBMIT_15, json={"prompt": "p", "image": image, **fields})
        assert r.status_code == 200, (fields, r.text)


async def test_super_resolution_is_a_422_until_a_live_worker_runs_its_stage(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path)
    registry = services_of(app).registry
    body = {"prompt": "p", "image": data_uri(png()), "super_resolution": True}
    async with client_for(app) as client:
        r = await client.post(SUBMIT_15, json=body)
        error = assert_error(r, 422, "invalid_input")["error"]
        assert "720p_sr" in error["message"] and "no worker" in error["message"]
        assert error["field"] == "super_resolution", error

        # A worker still loading may yet have it: accepted. Once loaded without it: refused,
        # naming what it has.
        registry.register("w-1", "gpu-host", 1, serves=[MODEL_15])
        assert (await client.post(SUBMIT_15, json=body)).status_code == 200
        registry.beat("w-1", state=WorkerState.IDLE, stages={MODEL_15: []})
        r = await client.post(SUBMIT_15, json=body)
        message = assert_error(r, 422, "invalid_input")["error"]["message"]
        assert "gpu-host: no optional stage" in message, message
        # The 720p request needs the other stage; the 480p one is accepted once a worker has it.
        registry.beat("w-1", stages={MODEL_15: ["720p_sr"]})
        assert (await client.post(SUBMIT_15, json=body)).status_code == 200
        r = await client.post(SUBMIT_15, json={**body, "resolution": "720p"})
        assert "1080p_sr" in assert_error(r, 422, "invalid_input")["error"]["message"]
        # Without super_resolution nothing is asked of the workers.
        plain = {k: v for k, v in body.items() if k != "super_resolution"}
        assert (
            await client.post(SUBMIT_15, json={**plain, "resolution": "720p"})
        ).status_code == 200
