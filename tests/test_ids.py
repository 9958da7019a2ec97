"""Ids from outside are checked against what the API issues, and encoded in one place."""

from __future__ import annotations

import pytest

from worker.errors import InvalidId, WorkerError
from worker.ids import check_id, is_valid_id, path


@pytest.mark.parametrize(
    "value",
    ["thread_abc123", "run_ABC-def_9", "0b6e1f0c-7f1a-4c1e-9a43-8a4f0f6c2b11", "asst.v2:x", "a" * 128],
)
def test_ids_the_api_issues_are_accepted(value):
    """OpenAI-style, UUID and dotted/colon ids all pass unchanged."""
    assert is_valid_id(value)
    assert check_id(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "..", ".", "../../../assistants", "run?limit=1", "a&b", "a/b", "a b", "a\nb", "-lead",
     "a" * 129, "thread_é", None, 5, ["thread_a"]],
)
def test_anything_else_is_refused_with_a_clear_error(value):
    """Traversal, query injection, whitespace, overlong and non-string ids are all refused."""
    assert not is_valid_id(value)
    with pytest.raises(InvalidId, match="run_id .* is not an id the API issues") as info:
        check_id(value, "run_id")
    assert isinstance(info.value, WorkerError)
    assert isinstance(info.value, ValueError)


def test_path_checks_and_encodes_every_segment():
    """A template is filled with checked ids; a bad one never reaches a URL."""
    assert path("/threads/{thread_id}/runs/{run_id}", thread_id="t_1", run_id="r:2") == (
        "/threads/t_1/runs/r%3A2"
    )
    with pytest.raises(InvalidId, match="run_id"):
        path("/threads/{thread_id}/runs/{run_id}", thread_id="t", run_id="../../../assistants")
