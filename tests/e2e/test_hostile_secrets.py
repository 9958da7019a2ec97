"""Secrets never leave the process: an API that quotes the key back puts it nowhere.

Issue #25: an API (or a gateway) that echoes the key in its 401 put it on stderr in full,
and ``/readyz`` showed it to anyone. Here the real daemon runs as a child process against a
loopback API that answers well at first and then refuses the key, quoting it; the key has no
recognisable shape, so only the redaction of the configured secret itself can catch it. The
key must appear nowhere: not in the log lines, the exit message, ``/readyz`` or
``/status.json``.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import anyio
import pytest
from aiohttp import web

from tests.conftest import ServedApp, wait_for
from tests.e2e.process import ROOT, Daemon, environment, write_config
from tests.redis_server import free_port

if TYPE_CHECKING:
    from pathlib import Path

    from worker.simulator import Simulator

pytestmark = pytest.mark.e2e

# No shape a pattern would know (not sk-, not 32 hex, not a JWT): only the literal is caught.
KEY = "Plain-Key-CorrectHorse-4711"
THREAD = "thread_secret1"


class EchoingApi:
    """Lists no runs until told to refuse; then answers 401 quoting the key it was sent."""

    def __init__(self) -> None:
        self.refuse = False
        self.refused = 0
        self.app = web.Application()
        self.app.router.add_get("/v1/threads/{thread_id}/runs", self._runs)

    async def _runs(self, request: web.Request) -> web.Response:
        if not self.refuse:
            return web.json_response({"object": "list", "data": [], "has_more": False})
        self.refused += 1
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        message = f"Incorrect API key provided: {sent}. You can find your key at ..."
        return web.json_response({"error": {"message": message, "code": "invalid_api_key"}},
                                 status=401)


def config(tmp_path: Path, base_url: str, **server: Any) -> Path:
    return write_config(tmp_path / "worker.toml", cast("Simulator", _Base(base_url)), [THREAD],
                        server=server or {"enabled": False})


class _Base:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url


async def test_a_key_echoed_at_start_is_not_in_the_exit_message(tmp_path: Path) -> None:
    """Refused at start: exit 3 with one line saying so, and the key is not in it."""
    api = EchoingApi()
    api.refuse = True
    async with ServedApp(api.app) as served:
        path = config(tmp_path, f"{served.url}/v1")
        with anyio.fail_after(60):
            result = await anyio.run_process(
                [sys.executable, "-m", "worker", "run", "--config", str(path)],
                env=environment(OPENAI_API_KEY=KEY), cwd=ROOT, check=False)
    stderr = result.stderr.decode()
    assert result.returncode == 3, stderr
    assert api.refused >= 1
    assert "Incorrect API key provided: ***" in stderr
    assert KEY not in stderr
    assert KEY not in result.stdout.decode()


async def test_a_key_echoed_later_is_nowhere(tmp_path: Path) -> None:
    """Refused while running: /readyz says the key is refused, and neither it, /status.json
    nor any log line holds the key."""
    api = EchoingApi()
    port = free_port()
    async with ServedApp(api.app) as served:
        path = config(tmp_path, f"{served.url}/v1", enabled=True, host="127.0.0.1", port=port)
        daemon = await Daemon.start(path, OPENAI_API_KEY=KEY)
        try:
            await daemon.wait_for_event("worker started")
            api.refuse = True
            async with aiohttp.ClientSession() as http:
                readyz = await _read_until_refused(http, f"http://127.0.0.1:{port}")
                status = await (await http.get(f"http://127.0.0.1:{port}/status.json")).text()
            daemon.signal(signal.SIGTERM)
            await daemon.wait()
        finally:
            await daemon.aclose()
    assert json.loads(readyz)["reason"] == "the API refuses the key"
    assert "Incorrect API key provided: ***" in readyz
    for channel in (readyz, status, daemon.raw.decode()):
        assert KEY not in channel
    assert any("Incorrect API key provided: ***" in json.dumps(line) for line in daemon.lines)


async def _read_until_refused(http: aiohttp.ClientSession, base: str) -> str:
    body = ""

    async def refused() -> bool:
        nonlocal body
        async with http.get(f"{base}/readyz") as response:
            body = await response.text()
            return response.status == 503 and "refuses the key" in body

    await wait_for(refused, timeout_s=20, what="/readyz to say the key is refused")
    return body
