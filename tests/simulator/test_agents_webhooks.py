"""The simulator announces sessions that need action with signed webhooks the SDK verifies."""

from __future__ import annotations

import base64
from typing import Self

import openai
import pytest
from aiohttp import web

from tests.conftest import wait_for
from worker.simulator import Simulator

SECRET = "whsec_" + base64.b64encode(b"a-simulated-signing-secret-0123").decode()
ECHO = {"type": "function", "name": "echo"}


class Receiver:
    """A webhook endpoint on loopback that answers with `statuses` in turn, then 204."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), dict(request.headers)))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 204)

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hooks"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_each_requires_action_is_delivered_signed() -> None:
    async with Receiver([500]) as hooks, Simulator() as sim:
        sim.send_webhooks(hooks.url, SECRET, retry_s=0.01)
        session_id = sim.create_session(sim.create_agent("a", [ECHO]), [[{"name": "echo"}]])
        sim.session(session_id)  # applies the due transition: requires_action
        await wait_for(lambda: len(hooks.received) == 2, what="a delivery and its retry")
    (first, first_headers), (body, headers) = hooks.received
    assert first == body
    assert first_headers["webhook-id"] == headers["webhook-id"]  # a retry keeps its id
    sdk = openai.OpenAI(api_key="unused", webhook_secret=SECRET)
    event = sdk.webhooks.unwrap(body, headers)
    assert event.type == "agent.session.action_required"
    assert event.data.id == session_id
    assert event.data.required_action.type == "function_call"
    assert [(d.status, d.attempt) for d in sim.webhook_deliveries] == [(500, 1), (204, 2)]
    tampered = body.replace(session_id.encode(), b"sess_other")
    with pytest.raises(openai.InvalidWebhookSignatureError):
        sdk.webhooks.unwrap(tampered, headers)
