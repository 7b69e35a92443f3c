"""A submit's webhook query parameters, checked before anything else is done for the request."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import Query

from framecast.admission.keys import KeyStore
from framecast.contract.errors import ErrorCode
from framecast.errors import InputError
from framecast.fetch import Resolver, system_resolver
from framecast.webhooks.outbox import WebhookTarget
from framecast.webhooks.targets import check_webhook_url

WebhookParam = Annotated[
    str | None,
    Query(
        description="RunComfy's webhook: a URL (URL-encoded) that gets a signed POST (Standard "
        "Webhooks) when the request ends; see the README's Webhooks section.",
    ),
]
IntermediateParam = Annotated[
    bool,
    Query(
        description="RunComfy's webhook_intermediate_status: also POST in_queue and in_progress.",
    ),
]


def _refused(exc: InputError) -> InputError:
    # ``detail`` reaches RunComfy's 422 ``detail`` array (framecast.api.errors.error_response),
    # naming the query parameter rather than the body.
    return InputError(
        exc.message,
        code=exc.code,
        detail=[{"loc": ["query", "webhook"], "msg": exc.message, "type": exc.code}],
    )


async def webhook_target(
    url: str | None,
    intermediate: bool,
    *,
    owner: str,
    keys: KeyStore,
    base_url: str,
    allow_private: bool,
    resolver: Resolver = system_resolver,
) -> WebhookTarget | None:
    """The submit's webhook, or None without ``?webhook=``. Refused (422) for a URL the
    server must not POST to, or a key with nothing to sign deliveries with."""
    if url is None or not url.strip():
        if intermediate:
            raise _refused(
                InputError(
                    "webhook_intermediate_status needs a webhook URL (?webhook=...)",
                    code=ErrorCode.WEBHOOK_URL_MISSING,
                )
            )
        return None
    try:
        checked = await check_webhook_url(url, allow_private=allow_private, resolver=resolver)
    except InputError as exc:
        raise _refused(exc) from None
    if not await to_thread.run_sync(keys.webhook_secrets, owner):
        raise _refused(
            InputError(
                "this API key has no webhook secret to sign deliveries with (it was created "
                "before webhooks existed); run `framecast keys rotate-webhook-secret "
                f"{owner}` to give it one",
                code=ErrorCode.WEBHOOK_SECRET_MISSING,
            )
        )
    return WebhookTarget(url=checked.url, intermediate=intermediate, base_url=base_url)
