"""POST /v1/webhooks/openai: Standard Webhooks signatures checked with the library that signs
them, replays and stale timestamps refused, the session watched at once; and sessions through
POST /v1/watch."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import pytest
from standardwebhooks import Webhook

from worker.config.secret import Secret
from worker.config.settings import ServerSettings
from worker.errors import ConfigError, WatchLimitReached
from worker.observability.metrics import Metrics
from worker.service.server import Server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SECRET = "whsec_" + base64.b64encode(b"a-webhook-secret-of-32-bytes....").decode()
TOKEN = "watch-token-0123456789"


def action_required(session_id: str = "sess_1") -> bytes:
    return json.dumps({"id": "evt_1", "object": "event", "created_at": 1_700_000_000,
                       "type": "agent.session.action_required",
                       "data": {"id": session_id,
                                "required_action": {"type": "function_call"}}}).encode()


def signed(body: bytes, webhook_id: str = "msg_1", *, at: datetime | None = None,
           secret: str = SECRET) -> dict[str, str]:
    at = at or datetime.now(tz=UTC)
    signature = Webhook(secret).sign(webhook_id, at, body.decode())
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature, "Content-Type": "application/json"}


class Served:
    def __init__(self, server: Server, seen: list[tuple[str, str | None]]) -> None:
        self.server, self.seen = server, seen

    async def deliver(self, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{self.server.port}/v1/webhooks/openai", data=body,
            headers=headers,
        ) as response:
            return response.status, await response.json()

    async def watch(self, body: object) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{self.server.port}/v1/watch", json=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            return response.status, await response.json()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    seen: list[tuple[str, str | None]] = []

    async def remember(thread_id: str, run_id: str | None) -> None:
        seen.append((thread_id, run_id))

    server = Server(ServerSettings(host="127.0.0.1", port=0, watch_token=Secret(TOKEN),
                                   webhook_secret=Secret(SECRET)),
                    Metrics(), lambda: (True, {}), watch=remember)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        yield Served(server, seen)
        tg.cancel_scope.cancel()


async def test_a_signed_action_required_webhook_watches_its_session(served: Served) -> None:
    """Verified with the secret: the session is watched (and so read) at once."""
    body = action_required()
    status, answer = await served.deliver(body, signed(body))
    assert (status, answer) == (200, {"watching": "sess_1"})
    assert served.seen == [("sess_1", None)]


async def test_a_replayed_webhook_id_is_refused_and_not_acted_on(served: Served) -> None:
    """The same delivery again, within the tolerance window: 409, nothing watched twice."""
    body = action_required()
    headers = signed(body)
    await served.deliver(body, headers)
    status, answer = await served.deliver(body, headers)
    assert status == 409
    assert "already" in answer["error"]
    assert served.seen == [("sess_1", None)]


@pytest.mark.parametrize("minutes", [-10, 10])
async def test_a_stale_or_future_timestamp_is_refused(served: Served, minutes: int) -> None:
    """Correctly signed, but ten minutes off: refused, so an old capture cannot be replayed."""
    body = action_required()
    at = datetime.now(tz=UTC) + timedelta(minutes=minutes)
    status, answer = await served.deliver(body, signed(body, at=at))
    assert status == 401
    assert "too" in answer["error"]
    assert served.seen == []


async def test_a_wrong_signature_or_a_changed_body_is_refused(served: Served) -> None:
    """Another secret's signature, or the body changed after signing: 401; garbage: 400."""
    body = action_required()
    other = "whsec_" + base64.b64encode(b"another-secret-another-secret!!!").decode()
    assert (await served.deliver(body, signed(body, secret=other)))[0] == 401
    assert (await served.deliver(action_required("sess_2"), signed(body)))[0] == 401
    garbled = {**signed(body), "webhook-signature": "no-comma-here"}
    assert (await served.deliver(body, garbled))[0] == 400
    unsigned = {"Content-Type": "application/json"}
    assert (await served.deliver(body, unsigned))[0] == 401
    assert served.seen == []


async def test_events_of_other_kinds_are_answered_and_ignored(served: Served) -> None:
    """A response.completed webhook is verified and acknowledged; nothing is watched."""
    body = json.dumps({"id": "evt_2", "type": "response.completed",
                       "data": {"id": "resp_1"}}).encode()
    status, answer = await served.deliver(body, signed(body, "msg_2"))
    assert (status, answer) == (200, {"ignored": "response.completed"})
    assert served.seen == []


async def test_a_session_id_no_api_issues_is_refused(served: Served) -> None:
    """A signed event whose data.id could steer a request elsewhere is refused."""
    body = action_required("../../threads")
    assert (await served.deliver(body, signed(body, "msg_3")))[0] == 400
    assert served.seen == []


async def test_a_session_is_announced_through_the_watch_endpoint(served: Served) -> None:
    """POST /v1/watch {"session_id"}: the same token and checks as a thread."""
    status, answer = await served.watch({"session_id": "sess_9"})
    assert status == 202
    assert answer["watching"] == "sess_9"
    assert (await served.watch({"session_id": "sess/../x"}))[0] == 400
    assert served.seen == [("sess_9", None)]


async def test_the_endpoint_is_off_without_a_secret() -> None:
    """No secret: 404 naming the variable that turns it on."""
    server = Server(ServerSettings(host="127.0.0.1", port=0), Metrics(), lambda: (True, {}),
                    watch=_ignore)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        status, answer = await Served(server, []).deliver(b"{}", {})
        tg.cancel_scope.cancel()
    assert status == 404
    assert "TOOL_WORKER__SERVER__WEBHOOK_SECRET" in answer["error"]


def test_a_secret_that_is_not_base64_is_a_config_error() -> None:
    """Said at start, naming the key, instead of failing at the first delivery."""
    with pytest.raises(ConfigError, match="whsec_"):
        Server(ServerSettings(webhook_secret=Secret("whsec_not base64!")), Metrics(),
               lambda: (True, {}), watch=_ignore)


async def _ignore(_thread_id: str, _run_id: str | None) -> None:
    """A watch that takes everything and keeps nothing."""


async def test_a_delivery_refused_because_the_worker_is_full_is_taken_when_retried() -> None:
    """A 429 acted on nothing: the sender's retry (same webhook-id) must not be a "replay"."""
    full = True
    seen: list[str] = []

    async def watch(thread_id: str, _run_id: str | None) -> None:
        if full:
            raise WatchLimitReached(10)
        seen.append(thread_id)

    server = Server(ServerSettings(host="127.0.0.1", port=0, webhook_secret=Secret(SECRET)),
                    Metrics(), lambda: (True, {}), watch=watch)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        served = Served(server, [])
        body = action_required()
        headers = signed(body)
        assert (await served.deliver(body, headers))[0] == 429
        full = False
        assert await served.deliver(body, headers) == (200, {"watching": "sess_1"})
        tg.cancel_scope.cancel()
    assert seen == ["sess_1"]


async def test_a_webhook_id_too_long_to_remember_is_refused(served: Served) -> None:
    body = action_required()
    status, answer = await served.deliver(body, signed(body, webhook_id="m" * 257))
    assert status == 400
    assert "webhook-id" in answer["error"]
    assert served.seen == []
    assert served.server.webhooks is not None
    assert "m" * 257 not in served.server.webhooks._seen


async def test_a_body_too_large_is_a_counted_json_413() -> None:
    metrics = Metrics()
    server = Server(ServerSettings(host="127.0.0.1", port=0, webhook_secret=Secret(SECRET)),
                    metrics, lambda: (True, {}), watch=_ignore)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        status, answer = await Served(server, []).deliver(*_oversized())
        tg.cancel_scope.cancel()
    assert status == 413
    assert "larger" in answer["error"]
    assert metrics.intake_refused.labels("bad_request")._value.get() == 1


def _oversized() -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"type": "agent.session.action_required", "pad": "x" * 70_000}).encode()
    return body, signed(body)
