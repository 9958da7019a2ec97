"""backend "agents": a signed agent.session.action_required webhook makes the running worker
watch the session it names and answer its turn; a forged one changes nothing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import aiohttp
import anyio
import pytest
from standardwebhooks import Webhook

from tests.conftest import make_settings, wait_for
from worker.config.secret import Secret
from worker.daemon import Worker
from worker.handlers.registry import Registry
from worker.simulator import Simulator

pytestmark = pytest.mark.e2e

SECRET = "whsec_" + base64.b64encode(b"e2e-webhook-secret-0123456789abc").decode()
TURN = [{"name": "add", "arguments": {"a": 1, "b": 2}}]


def delivery(session_id: str, webhook_id: str, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"id": webhook_id, "object": "event", "created_at": 1_700_000_000,
                       "type": "agent.session.action_required",
                       "data": {"id": session_id,
                                "required_action": {"type": "function_call"}}}).encode()
    now = datetime.now(tz=UTC)
    headers = {"webhook-id": webhook_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(secret).sign(webhook_id, now, body.decode()),
               "Content-Type": "application/json"}
    return body, headers


async def test_a_webhook_brings_a_session_the_worker_did_not_know() -> None:
    """Forged: 401 and nothing watched. Signed: the session is watched and its turn answered."""
    async with Simulator() as sim:
        session_id = sim.create_session(sim.create_agent("hooked", []), [TURN])
        settings = make_settings(
            api={"backend": "agents", "base_url": sim.base_url, "max_requests_per_s": 0},
            watch={"idle_poll_interval_s": 5.0},
            tools={"modules": ["tests.handlers.sample"]},
            server={"host": "127.0.0.1", "port": 0},
        ).model_copy(update={"api_key": Secret(sim.api_key)})
        server = settings.server.model_copy(update={"webhook_secret": Secret(SECRET)})
        worker = Worker(settings.model_copy(update={"server": server}),
                        Registry.from_modules(settings.tools.modules))
        async with anyio.create_task_group() as tg, aiohttp.ClientSession() as http:
            await tg.start(worker.run)
            assert worker.server is not None
            url = f"http://127.0.0.1:{worker.server.port}/v1/webhooks/openai"
            forged = "whsec_" + base64.b64encode(b"not-the-secret-not-the-secret!!!").decode()
            body, headers = delivery(session_id, "msg_forged", forged)
            async with http.post(url, data=body, headers=headers) as answer:
                assert answer.status == 401
            assert worker.poller is not None
            assert worker.poller.watched == 0
            body, headers = delivery(session_id, "msg_1")
            async with http.post(url, data=body, headers=headers) as answer:
                assert answer.status == 200
            await wait_for(lambda: bool(sim.applied_posts(session_id)), what="the turn answered")
            worker.stop()
        [post] = sim.applied_posts(session_id)
    assert [(e["success"], e["output"]) for e in post.events] == [(True, "3")]
