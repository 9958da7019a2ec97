"""Request and answer shapes of the API: error bodies, parameter checks, pages, scripted rounds."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence

__all__ = [
    "RequestRefused",
    "ToolCallScript",
    "check_content",
    "check_fields",
    "check_kinds",
    "check_metadata",
    "expect_round_ids",
    "invalid_type",
    "not_found",
    "paginate",
    "parse_sim_rounds",
    "parse_tool_outputs",
    "refuse",
    "text_content",
]

# sim_rounds and sim_turns scripts are longer than the API's 512 characters a metadata value.
_LONG_METADATA_KEYS = frozenset({"sim_rounds", "sim_turns"})


@dataclass(frozen=True, slots=True)
class ToolCallScript:
    """One tool call the scripted "model" makes; `arguments` is sent verbatim, valid JSON or not.

    With a `server_label` it is a call of that MCP server's tool, which asks for approval
    (Azure's `submit_tool_approval`) instead of outputs.
    """

    name: str
    arguments: str
    server_label: str | None = None


class RequestRefused(ValueError):
    """The API refuses a request: HTTP `status` with the real API's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """`{"error": {"message", "type", "param", "code"}}`, as the API answers."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


def refuse(message: str, *, param: str | None = None, code: str | None = None) -> RequestRefused:
    """A 400 `invalid_request_error`."""
    return RequestRefused(400, message, param=param, code=code)


def not_found(kind: str, object_id: str) -> RequestRefused:
    """The API's 404 for an unknown id."""
    return RequestRefused(404, f"No {kind} found with id '{object_id}'.")


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    kinds = ((str, "a string"), (int, "an integer"), (float, "a decimal"), (list, "an array"))
    return next((name for cls, name in kinds if isinstance(value, cls)), "an object")


def invalid_type(param: str, expected: str, value: object) -> RequestRefused:
    """The API's 400 for a parameter of the wrong JSON type."""
    return refuse(
        f"Invalid type for '{param}': expected {expected}, but got {_json_kind(value)} instead.",
        param=param,
        code="invalid_type",
    )


def check_fields(
    body: object,
    allowed: Collection[str],
    required: Iterable[str] = (),
    *,
    where: str = "",
) -> dict[str, Any]:
    """`body` as an object holding only `allowed` fields and every `required` one."""
    if not isinstance(body, dict):
        raise invalid_type(where or "body", "an object", body)
    for name in body:
        if name not in allowed:
            raise refuse(f"Unknown parameter: '{where}{name}'.", param=f"{where}{name}",
                         code="unknown_parameter")
    for name in required:
        if name not in body:
            raise refuse(f"Missing required parameter: '{where}{name}'.", param=f"{where}{name}",
                         code="missing_required_parameter")
    return body


def check_kinds(fields: Mapping[str, Any], kinds: Mapping[str, str]) -> None:
    """Refuse a field whose JSON type is not its kind ("string", "number", "boolean", "array",
    "object", "tools"); null is accepted for every field."""
    for name, kind in kinds.items():
        value = fields.get(name)
        if value is None:
            continue
        if kind == "tools":
            _check_tools(name, value)
        elif not _is_kind(value, kind):
            article = "an" if kind[0] in "aeiou" else "a"
            raise invalid_type(name, f"{article} {kind}", value)


def _is_kind(value: object, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    types = {"string": str, "boolean": bool, "array": list, "object": dict}
    return isinstance(value, types[kind])


def _check_tools(name: str, tools: object) -> None:
    if not isinstance(tools, list):
        raise invalid_type(name, "an array", tools)
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in ("function", "code_interpreter", "file_search"):
            raise refuse(f"Invalid value for '{name}[{index}].type': expected one of "
                         "'function', 'code_interpreter' or 'file_search'.",
                         param=f"{name}[{index}].type", code="invalid_value")
        if kind == "function" and not isinstance(tool.get("function"), dict):
            raise invalid_type(f"{name}[{index}].function", "an object", tool.get("function"))


def check_content(content: object, param: str) -> None:
    """A message's content: a string, or a non-empty array of text and image parts."""
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not content:
        raise invalid_type(param, "a string or a non-empty array", content)
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("text", "image_url", "image_file"):
            raise refuse(f"Invalid value for '{where}': expected an object with 'type' one of "
                         "'text', 'image_url' or 'image_file'.", param=where,
                         code="invalid_value")
        if kind == "text" and not isinstance(part.get("text"), str):
            raise invalid_type(f"{where}.text", "a string", part.get("text"))
        if kind != "text" and not isinstance(part.get(kind), dict):
            raise invalid_type(f"{where}.{kind}", "an object", part.get(kind))


def check_metadata(value: object, param: str = "metadata") -> dict[str, str]:
    """At most 16 string values, keys up to 64 characters and values up to 512."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_type(param, "an object", value)
    if len(value) > 16:
        raise refuse(
            f"Invalid '{param}': too many properties. Expected an object with at most 16 "
            f"properties, but got an object with {len(value)} properties instead.",
            param=param,
            code="object_above_max_properties",
        )
    for key, item in value.items():
        if not isinstance(item, str):
            raise invalid_type(f"{param}.{key}", "a string", item)
        too_long = len(key) > 64 or (len(item) > 512 and key not in _LONG_METADATA_KEYS)
        if too_long:
            raise refuse(f"Invalid '{param}.{key}': string too long.", param=f"{param}.{key}",
                         code="string_above_max_length")
    return value


# The agents service's tool outputs are a union keyed by `type`; a function's output is
# "function_call_output", also the default (azure-ai-agents: ToolOutput(StructuredToolOutput,
# discriminator="function_call_output")). OpenAI's outputs have no `type` at all.
_OUTPUT_TYPE = "function_call_output"


def parse_tool_outputs(body: object, *, typed: bool = False) -> tuple[tuple[str, str], ...]:
    """The (tool_call_id, output) pairs of a submit_tool_outputs body, or the API's 400.

    ``typed`` (the azure profile) takes a ``type`` on each output, which must be
    "function_call_output" when given.
    """
    fields = check_fields(body, {"tool_outputs", "stream"}, ["tool_outputs"])
    if fields.get("stream") is not None and not isinstance(fields["stream"], bool):
        raise invalid_type("stream", "a boolean", fields["stream"])
    items = fields["tool_outputs"]
    if not isinstance(items, list):
        raise invalid_type("tool_outputs", "an array", items)
    pairs = []
    for index, item in enumerate(items):
        where = f"tool_outputs[{index}]"
        allowed = {"tool_call_id", "output", "type"} if typed else {"tool_call_id", "output"}
        output = check_fields(item, allowed, ["tool_call_id", "output"], where=f"{where}.")
        if output.get("type", _OUTPUT_TYPE) != _OUTPUT_TYPE:
            raise refuse(f"Invalid value for '{where}.type': expected '{_OUTPUT_TYPE}'.",
                         param=f"{where}.type", code="invalid_value")
        for name in ("tool_call_id", "output"):
            if not isinstance(output[name], str):
                raise invalid_type(f"{where}.{name}", "a string", output[name])
        pairs.append((output["tool_call_id"], output["output"]))
    return tuple(pairs)


def expect_round_ids(expected: Sequence[str], got: Sequence[str], *, partial: bool = False) -> None:
    """Refuse unless `got` holds each id of the round exactly once (or at most once, `partial`)."""
    counts, wanted = Counter(got), Counter(expected)
    fits = counts <= wanted if partial else counts == wanted
    if not fits:
        raise refuse(
            f"Expected tool outputs for call_ids {list(expected)}, got {list(got)}.",
            param="tool_outputs",
        )


def parse_sim_rounds(text: object) -> tuple[tuple[ToolCallScript, ...], ...]:
    """Rounds from `metadata["sim_rounds"]`: `[[{"name": ..., "arguments": "..."}], ...]`."""
    if text is None:
        return ()
    try:
        rounds: Any = json.loads(text) if isinstance(text, str) else None
        return tuple(tuple(_scripted_call(call) for call in round_) for round_ in rounds)
    except (ValueError, TypeError, KeyError) as exc:
        raise refuse(
            "Invalid 'metadata.sim_rounds': expected a JSON string like "
            '[[{"name": "echo", "arguments": "{}"}]] (a list of rounds of tool calls).',
            param="metadata.sim_rounds",
        ) from exc


def _scripted_call(call: Mapping[str, Any]) -> ToolCallScript:
    arguments = call["arguments"]
    # An object where the JSON string belongs is taken as meant: encoded, not rejected.
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    label = call.get("server_label")
    return ToolCallScript(str(call["name"]), text, None if label is None else str(label))


def text_content(content: object) -> list[dict[str, Any]]:
    """Message content as the API shows it: text parts carry a value and annotations."""
    if isinstance(content, str):
        return [{"type": "text", "text": {"value": content, "annotations": []}}]
    parts = content if isinstance(content, list) else []
    return [
        {"type": "text", "text": {"value": part["text"], "annotations": []}}
        if part.get("type") == "text"
        else dict(part)
        for part in parts
    ]


def _check_page(limit: object, order: object) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise invalid_type("limit", "an integer", limit)
    if limit < 1:
        raise refuse(
            "Invalid 'limit': integer below minimum value. "
            f"Expected a value >= 1, but got {limit} instead.",
            param="limit",
            code="integer_below_min_value",
        )
    if limit > 100:
        raise refuse(
            "Invalid 'limit': integer above maximum value. "
            f"Expected a value <= 100, but got {limit} instead.",
            param="limit",
            code="integer_above_max_value",
        )
    if order not in ("asc", "desc"):
        raise refuse(f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
                      param="order", code="invalid_value")


def _cursor(ids: list[str], cursor: str, param: str) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise refuse(f"Invalid '{param}': no object with id '{cursor}' in this list.",
                     param=param) from None


def paginate(
    objects: Sequence[Mapping[str, Any]],
    *,
    limit: int = 20,
    order: str = "desc",
    after: str | None = None,
    before: str | None = None,
    by_created_at: bool = False,
) -> dict[str, Any]:
    """A cursor page of `objects` (oldest first) as the API lists them.

    With `by_created_at`, objects are ordered by `created_at` alone, as some servers do: ties
    keep their creation order in both directions, so with `order=desc` a newer object created in
    the same second comes after an older one.

    `after` pages forward from a cursor, `before` pages back towards the start and returns the
    items nearest to the cursor; `has_more` says whether more lie further in that direction.
    An empty page has null `first_id` and `last_id`, as the API sends (the spec says string).
    """
    _check_page(limit, order)
    if by_created_at:
        ordered = sorted(objects, key=lambda item: item["created_at"], reverse=order == "desc")
    else:
        ordered = list(objects) if order == "asc" else list(reversed(objects))
    ids = [item["id"] for item in ordered]
    start = 0 if after is None else _cursor(ids, after, "after") + 1
    stop = len(ordered) if before is None else _cursor(ids, before, "before")
    window = ordered[start:stop]
    page = window[-limit:] if before is not None and after is None else window[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(window) > limit,
    }
