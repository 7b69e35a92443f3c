"""A client for framecast, and for RunComfy's Model API, whose routes it shares.

```python
from framecast.client import Client

with Client("http://127.0.0.1:8000", key="...") as client:
    result = client.subscribe(
        "tencent/hunyuan/image-to-video",
        {"prompt": "slow push in", "image_url": "https://example.com/harbour.jpg"},
        on_progress=lambda s: print(s.status, s.queue_position, s.step, s.total_steps),
    )
    client.download(result, "out.mp4")
```

:class:`AsyncClient` is the same, awaited. Every error answer raises :class:`APIError`.
"""

from framecast.client.aio import AsyncClient
from framecast.client.core import DEFAULT_MODEL, RUNCOMFY_SERVER, ProgressCallback
from framecast.client.errors import APIError
from framecast.client.inputs import data_uri, image_reference
from framecast.client.models import (
    CancelResult,
    JobError,
    ModelCard,
    Output,
    RequestPage,
    RequestResult,
    RequestStatus,
    Submitted,
)
from framecast.client.sync import Client
from framecast.client.webhooks import WebhookEvent, WebhookVerificationError, verify_webhook

__all__ = [
    "DEFAULT_MODEL",
    "RUNCOMFY_SERVER",
    "APIError",
    "AsyncClient",
    "CancelResult",
    "Client",
    "JobError",
    "ModelCard",
    "Output",
    "ProgressCallback",
    "RequestPage",
    "RequestResult",
    "RequestStatus",
    "Submitted",
    "WebhookEvent",
    "WebhookVerificationError",
    "data_uri",
    "image_reference",
    "verify_webhook",
]
