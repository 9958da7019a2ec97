"""Test helpers: the OpenAPI spec as JSON Schema validators, and an HTTP client that checks each answer."""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import aiohttp
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from multidict import CIMultiDictProxy

__all__ = ["SPEC", "FakeClock", "Reply", "SimHttp", "Spec"]

_SPEC_URI = "urn:openai-assistants-spec"
# The API answers an empty list with null first_id/last_id; the spec says string. We side with
# the API (the client must cope with it) and widen exactly these fields.
_NULLABLE_CURSORS = ("ListRunsResponse", "ListMessagesResponse", "ListAssistantsResponse")


def _spec_path() -> Path:
    override = os.environ.get("TOOL_WORKER_SPEC")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2].parent / "shared" / "spec" / (
        "assistants-runs.openapi.json"
    )


def _nullable_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable` (which this 3.1 document still uses) as JSON Schema."""
    if isinstance(node, list):
        return [_nullable_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    all_of = node.get("allOf")
    nullable = node.pop("nullable", False)
    if isinstance(all_of, list) and {"nullable": True} in all_of:
        # `allOf: [{$ref}, {nullable: true}]` means "the ref, or null".
        node["allOf"] = [item for item in all_of if item != {"nullable": True}]
        nullable = True
    converted = {key: _nullable_to_json_schema(value) for key, value in node.items()}
    return {"anyOf": [converted, {"type": "null"}]} if nullable else converted


class Spec:
    """The OpenAPI document turned into validators for its component schemas and its operations."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = _nullable_to_json_schema(document)
        schemas = self.document["components"]["schemas"]
        for name in _NULLABLE_CURSORS:
            for cursor in ("first_id", "last_id"):
                schemas[name]["properties"][cursor] = {"type": ["string", "null"]}
        resource = Resource.from_contents(self.document, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(_SPEC_URI, resource)
        self._validators: dict[str, Draft202012Validator] = {}
        self._operations = [
            (method.upper(), re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), op)
            for path, item in self.document["paths"].items()
            for method, op in item.items()
            if isinstance(op, dict) and "operationId" in op
        ]

    @property
    def schemas(self) -> dict[str, Any]:
        """The component schemas, after the nullable conversion."""
        return dict(self.document["components"]["schemas"])

    def validator(self, schema_name: str) -> Draft202012Validator:
        """A validator for `#/components/schemas/<schema_name>`."""
        if schema_name not in self._validators:
            ref = {"$ref": f"{_SPEC_URI}#/components/schemas/{schema_name}"}
            self._validators[schema_name] = Draft202012Validator(ref, registry=self._registry)
        return self._validators[schema_name]

    def validate(self, schema_name: str, instance: object) -> None:
        """Raise `jsonschema.ValidationError` unless `instance` matches the schema."""
        self.validator(schema_name).validate(instance)

    def operation(self, method: str, path: str) -> dict[str, Any] | None:
        """The operation serving `method path` (path without the /v1 prefix), if any."""
        for op_method, pattern, op in self._operations:
            if op_method == method.upper() and pattern.match(path):
                return dict(op)
        return None

    def response_schema(self, method: str, path: str, status: int) -> str:
        """The component schema name an answer to `method path` with `status` must match."""
        op = self.operation(method, path)
        if op is None or status != 200:
            return "ErrorResponse"
        ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        return str(ref.rsplit("/", 1)[-1])


def _load_spec() -> Spec:
    path = _spec_path()
    if not path.is_file():
        raise FileNotFoundError(f"OpenAPI spec not found at {path}; set TOOL_WORKER_SPEC to its path")
    return Spec(json.loads(path.read_text(encoding="utf-8")))


# Read at import (test collection), outside any event loop.
SPEC = _load_spec()


@dataclass(frozen=True)
class Reply:
    """One HTTP answer of the simulator, already checked against the spec."""

    status: int
    body: Any
    headers: CIMultiDictProxy[str]
    operation_id: str | None


class SimHttp:
    """An aiohttp client for the simulator that validates every answer against the spec."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "sk-sim",
        *,
        beta: str | None = "assistants=v2",
    ) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"}
        if beta is not None:
            self.headers["OpenAI-Beta"] = beta
        self.operations_seen: set[str] = set()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        raw: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send `body` as JSON (or `raw` bytes) to `base_url + path`; the answer must match the spec."""
        assert self._session is not None, "use `async with SimHttp(...)`"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        # aiohttp warns that a large bytes body blocks the loop; a file-like body is streamed.
        stream = None if data is None else io.BytesIO(data)
        all_headers = {**self.headers, "Content-Type": "application/json", **(headers or {})}
        async with self._session.request(
            method, self.base_url + path, data=stream, params=params, headers=all_headers
        ) as response:
            payload = await response.json()
            reply_headers = response.headers
        op = SPEC.operation(method, path)
        SPEC.validate(SPEC.response_schema(method, path, response.status), payload)
        operation_id = None if op is None else str(op["operationId"])
        if operation_id is not None and response.status == 200:
            self.operations_seen.add(operation_id)
        return Reply(response.status, payload, reply_headers, operation_id)

    async def get(self, path: str, **params: str) -> Reply:
        """GET with query parameters."""
        return await self.request("GET", path, params=params or None)

    async def post(self, path: str, body: object = None) -> Reply:
        """POST a JSON body."""
        return await self.request("POST", path, {} if body is None else body)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_700_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds
