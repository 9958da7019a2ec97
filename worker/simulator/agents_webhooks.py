"""Webhook deliveries of the simulated Agents API: `agent.session.action_required`, signed.

Each time a session reaches `requires_action`, the simulator POSTs the event the SDK's
`AgentSessionActionRequiredWebhookEvent` describes (`{"id", "object": "event", "created_at",
"type", "data": {"id": <session id>, "required_action": {"type": ...}}}`) to the configured URL,
signed as Standard Webhooks: headers `webhook-id`, `webhook-timestamp` (unix seconds) and
`webhook-signature` = `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, the key being the
base64 after `whsec_` (any other secret is used as its UTF-8 bytes, as the SDK's `unwrap` does).
A delivery answered other than 2xx is retried `retries` times, `retry_s` apart, with the same
webhook-id, as a sender does; each attempt is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.simulator.agents_records import SessionRecord

__all__ = ["WebhookDelivery", "WebhookSender", "sign"]


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header of a delivery."""
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") \
        else secret.encode()
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One attempt to deliver a webhook: what was sent and how it was answered."""

    webhook_id: str
    session_id: str
    body: dict[str, Any]
    status: int | None  # None: no answer (connection refused, timeout)
    attempt: int


class WebhookSender:
    """Sends `agent.session.action_required` for each session that comes to need action.

    Args:
        url: where deliveries go.
        secret: the signing secret (`whsec_<base64>`).
        new_id: makes each delivery's webhook-id.
        retries: further attempts after one not answered 2xx.
        retry_s: the pause between attempts.
        clock: epoch seconds, for `webhook-timestamp` and `created_at`.
    """

    def __init__(self, url: str, secret: str, new_id: Callable[[str], str], *,
                 retries: int = 2, retry_s: float = 0.2,
                 clock: Callable[[], float] = time.time) -> None:
        self.url, self._secret, self._new_id = url, secret, new_id
        self.retries, self.retry_s, self.clock = retries, retry_s, clock
        self.deliveries: list[WebhookDelivery] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, session: SessionRecord) -> None:
        """Queue a delivery about `session` (called when it reaches requires_action)."""
        actions = session.required_actions()
        kind = actions[0]["type"] if actions else "function_call"
        event = {"id": self._new_id("evt_"), "object": "event",
                 "created_at": int(self.clock()), "type": "agent.session.action_required",
                 "data": {"id": session.id, "required_action": {"type": kind}}}
        try:
            task = asyncio.get_running_loop().create_task(self._deliver(session.id, event))
        except RuntimeError:  # no event loop: the scene is being set before serving
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, session_id: str, event: dict[str, Any]) -> None:
        webhook_id = self._new_id("msg_")
        body = json.dumps(event).encode()
        for attempt in range(1, self.retries + 2):
            timestamp = int(self.clock())
            headers = {"Content-Type": "application/json", "webhook-id": webhook_id,
                       "webhook-timestamp": str(timestamp),
                       "webhook-signature": sign(self._secret, webhook_id, timestamp, body)}
            status = await self._post(body, headers)
            self.deliveries.append(WebhookDelivery(webhook_id, session_id, event, status, attempt))
            if status is not None and 200 <= status < 300:
                return
            await asyncio.sleep(self.retry_s)

    async def _post(self, body: bytes, headers: dict[str, str]) -> int | None:
        timeout = aiohttp.ClientTimeout(total=5.0)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http, http.post(
                self.url, data=body, headers=headers
            ) as reply:
                return reply.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def aclose(self) -> None:
        """Stop deliveries still in flight."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
