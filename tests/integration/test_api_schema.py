"""Schemathesis over the API's own OpenAPI document, in-process: every route with every check
(no 5xx, every status and header declared, bodies as documented, malformed input refused, valid
input accepted, the key required), with generated inputs both valid and malformed.

One test walks the operations itself: schemathesis' pytest plugin (``from_fixture``) does not
run under this pytest, and a schema loaded at import time would build the app at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err

from .inprocess import KEY, make_app

AUTH = {"Authorization": f"Bearer {KEY}"}
ACCEPTED = '["2XX", "3XX", "401", "403", "404", "409", "422", "429", "5XX"]'
ACCEPTED_OPENAI = '["2XX", "3XX", "400", "401", "403", "404", "409", "429", "5XX"]'
CONFIG = f"""
[generation]
# Every call carries the key (AUTH); a negative case that drops or mangles it is then sent
# with a valid key, and its other mutation alone (an extra query parameter, say) may be
# harmless, so the check would call a valid request accepted. Whether routes require the key
# is the ignored_auth check's, which sends requests without it.
with-security-parameters = false
[[operations]]
include-path = "/readyz"
# Its documented answer while no worker has sent a heartbeat (none runs here).
checks.not_a_server_error.expected-statuses = ["2XX", "3XX", "4XX", "503"]

[[operations]]
include-path-regex = "^/v1/models/.+/image-to-video$"
# Schema-valid is not enough: the image must be one that can be fetched and decoded, which no
# schema can say; anything else is a 422 (the negative checks still see that it is refused).
checks.positive_data_acceptance.expected-statuses = {ACCEPTED}

[[operations]]
include-path-regex = "^/v1/videos"
# OpenAI's shape answers invalid input with 400: a schema-valid body may still lack the image
# an image-to-video model needs, or carry one that cannot be decoded; `after` must name one of
# this key's videos.
checks.positive_data_acceptance.expected-statuses = {ACCEPTED_OPENAI}

[[operations]]
include-path = "/v1/requests"
include-method = "GET"
# The cursor is opaque: only one this server handed out is valid.
checks.positive_data_acceptance.expected-statuses = {ACCEPTED}
"""
EXAMPLES = 15
"""Per operation and generation mode: enough to reach the declared statuses and the edge values
(empty, huge, non-ASCII, wrong types), few enough that each database's run takes about 8 s on 2
idle cores (30 took 17 s, and found nothing 15 missed: a validator raising on any prompt over 3
characters fails 5 operations with either). The examples are derandomized: the same each run."""


Operation = schemathesis.APIOperation[Any, Any, Any, Any]


def check_operation(operation: Operation, mode: GenerationMode) -> str | None:
    """Run every check on ``EXAMPLES`` generated cases; the failure report, or None."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case[Operation]) -> None:
        case.call_and_validate(headers=AUTH)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.NEGATIVE:
            return None  # nothing to send malformed: the route takes no input
        raise
    except (FailureGroup, Exception) as exc:  # what the checks found, or an error calling the app
        return f"{operation.label} ({mode.value}): {exc}"
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The app's database settings. PostgreSQL refuses inputs SQLite takes (a NUL in any text,
    integers past 64 bits), so it is run too where FRAMECAST_TEST_DATABASE_URL names one (CI);
    without it, this test's time stays off the suite of a machine that may have none."""
    if request.param == "sqlite":
        return {}
    if not os.environ.get("FRAMECAST_TEST_DATABASE_URL"):
        pytest.skip("FRAMECAST_TEST_DATABASE_URL is unset")
    return {"database_url": str(request.getfixturevalue("pg_schema_url"))}


def test_every_route_keeps_to_its_document(tmp_path: Path, database: dict[str, str]) -> None:
    config = schemathesis.Config.from_str(CONFIG)
    app = make_app(tmp_path, **database)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    operations: list[Operation] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the document itself is not valid OpenAPI
        operations.append(result.ok())
    assert len(operations) >= 10, [o.label for o in operations]
    failures = [
        failure
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if (failure := check_operation(operation, mode)) is not None
    ]
    assert not failures, "\n\n".join(failures)


def test_the_document_declares_the_bearer_scheme(tmp_path: Path) -> None:
    document = make_app(tmp_path).openapi()
    declared = document["components"]["securitySchemes"]["apiKey"]
    assert (declared["type"], declared["scheme"]) == ("http", "bearer")
    submit = document["paths"]["/v1/models/tencent/hunyuan/image-to-video"]["post"]
    assert submit["security"] == [{"apiKey": []}]


def test_every_answer_of_a_request_is_typed(tmp_path: Path) -> None:
    """Submit, status, result, cancel and the listing: each success answer is a component of
    the document (the contract's model), not an untyped object; every error, the error body."""
    document = make_app(tmp_path).openapi()
    schemas = document["components"]["schemas"]
    successes = {
        ("post", "/v1/models/tencent/hunyuan/image-to-video", "200"): "Submitted",
        ("post", "/v1/models/tencent/hunyuan-video-v1.5/image-to-video", "200"): "Submitted",
        ("get", "/v1/requests/{request_id}/status", "200"): "RequestStatus",
        ("get", "/v1/requests/{request_id}/result", "200"): "RequestResult",
        ("post", "/v1/requests/{request_id}/cancel", "200"): "CancelResult",
        ("post", "/v1/requests/{request_id}/cancel", "202"): "CancelResult",
        ("get", "/v1/requests", "200"): "RequestPage",
    }
    for (method, path, status), name in successes.items():
        answers = document["paths"][path][method]["responses"]
        schema = answers[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{name}"}, (method, path, status)
        assert {"request_id", "next_cursor"} & set(schemas[name]["properties"]), name
        for code, answer in answers.items():
            if code.startswith(("4", "5")):
                error = answer["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorBody"}, (path, code)
    listed = schemas["RequestPage"]["properties"]["requests"]["items"]
    assert listed == {"$ref": "#/components/schemas/RequestStatus"}
    # The status and the error code are the values framecast sends, not any string.
    assert "in_progress" in schemas["RequestStatus"]["properties"]["status"]["enum"]
    assert "out_of_memory" in schemas["JobError"]["properties"]["code"]["enum"]
    assert schemas["ErrorDetail"]["properties"]["code"]["$ref"] == "#/components/schemas/ErrorCode"
    assert "request_not_found" in schemas["ErrorCode"]["enum"]
