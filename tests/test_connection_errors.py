"""Errors that will not heal: a host that does not resolve, TLS that fails; named, logged once."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from tests.conftest import ServedApp
from worker.api.backends import build_profile
from worker.api.client import ApiClient
from worker.api.retry import RetryPolicy
from worker.config.secret import Secret
from worker.config.settings import ApiSettings
from worker.errors import ApiConnectionError, ApiErrorKind
from worker.observability.metrics import Metrics
from worker.testing import capture_logs

if TYPE_CHECKING:
    from pathlib import Path

LOUD = "the API cannot be reached until this is fixed"


def make_client(base_url: str, retries: int = 3) -> ApiClient:
    settings = ApiSettings(base_url=base_url, max_retries=retries, connect_timeout_s=5)
    return ApiClient(build_profile(settings, Secret("sk-test")), settings, Metrics(),
                     retry=RetryPolicy(retries, base_s=0.001))


def ok_app() -> web.Application:
    async def handler(_request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server-side TLS context with a certificate nobody vouches for."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder: Path = tmp_path_factory.mktemp("tls")
    subprocess.run(  # noqa: S603 - our own arguments
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",  # noqa: S607
         "-subj", "/CN=127.0.0.1", "-keyout", str(folder / "key.pem"),
         "-out", str(folder / "cert.pem")],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


async def test_a_host_that_does_not_resolve_is_a_dns_error_logged_once() -> None:
    """nonexistent.invalid: ApiConnectionError of kind dns naming the host, not retried, and
    one error line however often it is met."""
    with capture_logs() as logs:
        async with make_client("http://nonexistent.invalid/v1") as client:
            errors = []
            for _ in range(3):
                with pytest.raises(ApiConnectionError) as info:
                    await client.retrieve_run("thread_1", "run_1")
                errors.append(info.value)
            counted = client._metrics.registry.get_sample_value(
                "toolworker_api_errors_total", {"endpoint": "retrieve_run", "kind": "dns"})
    assert {error.kind for error in errors} == {ApiErrorKind.DNS}
    assert "nonexistent.invalid" in str(errors[0])
    assert counted == 3  # each met once: a lasting error is not retried
    assert [e["event"] for e in logs if e["event"] == LOUD] == [LOUD]
    assert not [e for e in logs if e["event"] == "API request failed; retrying"]


async def test_https_to_a_plain_http_server_is_a_tls_error() -> None:
    """An https:// base_url pointing at a plain-HTTP socket: kind tls, naming where."""
    async with ServedApp(ok_app()) as server:
        url = server.url.replace("http://", "https://")
        async with make_client(f"{url}/v1") as client:
            with pytest.raises(ApiConnectionError) as info:
                await client.retrieve_run("thread_1", "run_1")
    assert info.value.kind is ApiErrorKind.TLS
    assert "TLS failed for 127.0.0.1:" in str(info.value)


async def test_a_self_signed_certificate_is_a_tls_error(self_signed: ssl.SSLContext) -> None:
    """A certificate that does not verify: kind tls, saying why."""
    runner = web.AppRunner(ok_app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed).start()
        port = runner.addresses[0][1]
        with capture_logs() as logs:
            async with make_client(f"https://127.0.0.1:{port}/v1") as client:
                for _ in range(2):
                    with pytest.raises(ApiConnectionError) as info:
                        await client.retrieve_run("thread_1", "run_1")
    finally:
        await runner.cleanup()
    assert info.value.kind is ApiErrorKind.TLS
    assert "certificate verify failed" in str(info.value)
    assert len([e for e in logs if e["event"] == LOUD]) == 1
