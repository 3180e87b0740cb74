"""Controller settings and contexts for tests that drive the controller's services against a real Redis."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from controller.context import Context
from controller.settings import ControllerSettings


def settings_for(redis_url: str, name: str, **overrides: Any) -> ControllerSettings:
    """Settings on `redis_url` under a fresh key prefix starting with `name`."""
    return ControllerSettings(
        redis_url=redis_url,
        key_prefix=f"{name}-{uuid.uuid4().hex}",
        account_key=base64.b64encode(b"k" * 32).decode(),
        node_secret="secret",
        **overrides,
    )


async def close_context(context: Context) -> None:
    """Close what a context built for a test holds."""
    await context.http.aclose()
    await context.redis.aclose()
    await context.wire.aclose()
