"""WebhookIntake: OpenAI's webhooks (``POST /v1/webhooks/openai``) make the worker read a
session at once.

OpenAI signs its webhooks as Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``: HMAC-SHA256 of ``id.timestamp.body`` with the ``whsec_`` secret).
The ``standardwebhooks`` library checks the signature and refuses a timestamp more than five
minutes from now; a ``webhook-id`` seen within that window is a replay and is not acted on
again. ``agent.session.action_required`` (and the session's other events) carry only the
session id in ``data.id``: the worker watches that session and reads it right away.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError
from standardwebhooks.webhooks import EmptyWebhookSecretError

from worker.errors import ConfigError, WatchLimitReached, WatchStoreError
from worker.ids import is_valid_id

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.config.secret import Secret
    from worker.service.intake import Refusals, Watch

__all__ = ["MAX_WEBHOOK_ID", "TOLERANCE_S", "WebhookIntake"]

# standardwebhooks' fixed tolerance: a timestamp further than this from now is refused.
TOLERANCE_S = 300.0
MAX_WEBHOOK_ID = 256  # OpenAI's are "wh_" and a few dozen characters
_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# One or more space-separated "v1,<base64>" entries. Checked here, not left to the library:
# standardwebhooks 1.3 reads a garbled header as a wrong signature (401), older ones raised.
_SIGNATURES = re.compile(r"v[0-9a-z]+,[A-Za-z0-9+/=]+( v[0-9a-z]+,[A-Za-z0-9+/=]+)*")


class _Refused(Exception):
    def __init__(self, status: int, message: str, reason: str) -> None:
        self.status, self.message, self.reason = status, message, reason
        super().__init__(message)


class WebhookIntake:
    """Verifies each delivery, refuses replays, and watches the session it names."""

    def __init__(
        self, secret: Secret, watch: Watch, refusals: Refusals, *,
        max_remembered: int = 100_000, clock: Callable[[], float] = time.time,
    ) -> None:
        """``max_remembered`` bounds the ids kept to refuse replays (the oldest go first).

        Raises:
            ConfigError: the secret is not a Standard Webhooks secret.
        """
        try:
            self._webhook = Webhook(secret.get())
        except (ValueError, EmptyWebhookSecretError):
            raise ConfigError("not a Standard Webhooks secret: whsec_ followed by base64, as "
                              "OpenAI shows it", key="server.webhook_secret") from None
        self._watch = watch
        self._refusals = refusals
        self._seen: OrderedDict[str, float] = OrderedDict()  # webhook-id -> forget after
        self._max_remembered = max_remembered
        self._clock = clock
        self.accepted = 0

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one delivery: 200 when taken (or a replay, not acted on), 4xx when refused."""
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise _Refused(413, "the body is larger than a webhook event can be",
                               "bad_request") from None
            return await self._take(body, request.headers)
        except _Refused as refused:
            self._refusals.refuse(refused.reason, refused.message,
                                  address=request.remote or "unknown")
            return web.json_response({"error": refused.message}, status=refused.status)

    async def _take(self, body: bytes, headers: Any) -> web.Response:
        webhook_id = str(headers.get("webhook-id", ""))
        if len(webhook_id) > MAX_WEBHOOK_ID:  # remembered for ten minutes: bound what is kept
            raise _Refused(400, f"webhook-id is longer than {MAX_WEBHOOK_ID} characters",
                           "bad_request")
        event = self._verified(body, headers)
        self._forget_old()
        if webhook_id in self._seen:
            # Acted on already: a replay (or a sender's retry of one we took) changes nothing.
            raise _Refused(409, "this webhook-id was received already", "replayed")
        self._seen[webhook_id] = self._clock() + 2 * TOLERANCE_S
        while len(self._seen) > self._max_remembered:
            self._seen.popitem(last=False)
        kind = event.get("type")
        data = event.get("data")
        session_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(kind, str) or not kind.startswith("agent.session."):
            return web.json_response({"ignored": kind if isinstance(kind, str) else None})
        if not is_valid_id(session_id):
            raise _Refused(400, "the event's data.id is not a session id", "bad_id")
        try:
            await self._watch(str(session_id), None)  # committed to the watch store
        except WatchLimitReached as exc:  # not acted on: the sender's retry must be taken
            self._seen.pop(webhook_id, None)
            raise _Refused(429, str(exc), "full") from None
        except WatchStoreError as exc:  # not remembered as seen: the sender's retry is taken
            self._seen.pop(webhook_id, None)
            raise _Refused(503, f"cannot keep the session now ({exc.reason}); retry later",
                           "unavailable") from None
        self.accepted += 1
        return web.json_response({"watching": session_id})

    def _verified(self, body: bytes, headers: Any) -> dict[str, Any]:
        """The event, once its signature and timestamp check out."""
        given = {name: str(headers.get(name, "")) for name in _HEADERS}
        if given["webhook-signature"] and not _SIGNATURES.fullmatch(given["webhook-signature"]):
            raise _Refused(400, "webhook not verified: the webhook-signature header is not "
                           "'v1,<base64>' entries", "bad_request")
        try:
            event = self._webhook.verify(body, given)
        except WebhookVerificationError as exc:
            raise _Refused(401, f"webhook not verified: {exc}", "auth") from None
        except (ValueError, UnicodeDecodeError, RecursionError):
            # A malformed signature header, a body that is not UTF-8 or JSON.
            raise _Refused(400, "webhook not verified: malformed headers or body",
                           "bad_request") from None
        if not isinstance(event, dict):
            raise _Refused(400, "the webhook's body is not a JSON object", "bad_request")
        return event

    def _forget_old(self) -> None:
        now = self._clock()
        while self._seen:
            webhook_id, forget_after = next(iter(self._seen.items()))
            if forget_after > now:
                break
            del self._seen[webhook_id]

