"""Docstrings: the summary the model reads and the Google-style Args descriptions."""

from __future__ import annotations

from worker.handlers.docstrings import parse_docstring


def test_the_summary_is_the_first_paragraph_joined_into_one_line() -> None:
    """Lines of the first paragraph are joined; later paragraphs are not the summary."""
    doc = parse_docstring("""Tell the time
    in a zone.

    Longer notes for people.
    """)
    assert doc.summary == "Tell the time in a zone."


def test_args_entries_with_types_and_continuation_lines() -> None:
    """``name (type): text`` and indented continuation lines make one description each."""
    doc = parse_docstring("""Convert.

    Args:
        value (float): The amount
            to convert.
        unit: A unit such as 'km'.

    Returns:
        The converted value.
    """)
    assert doc.params == {"value": "The amount to convert.", "unit": "A unit such as 'km'."}


def test_other_sections_end_the_args() -> None:
    """Returns and Raises entries are not parameters."""
    doc = parse_docstring("""Do.

    Args:
        a: first.
    Raises:
        ValueError: never.
    """)
    assert doc.params == {"a": "first."}


def test_a_docstring_that_starts_with_args_has_no_summary() -> None:
    """A section header is never mistaken for the summary."""
    doc = parse_docstring("""
    Args:
        a: first.
    """)
    assert doc.summary == ""
    assert doc.params == {"a": "first."}


def test_no_docstring_gives_nothing() -> None:
    """A function without a docstring has an empty summary and no descriptions."""
    assert parse_docstring(None).summary == ""
    assert parse_docstring(None).params == {}


def test_arguments_and_parameters_headers_and_star_names() -> None:
    """Napoleon's other header names work, and ``*args``/``**kwargs`` lose their stars."""
    doc = parse_docstring("""Do.

    Arguments:
        *names: several.
        **options: more.
    """)
    assert doc.params == {"names": "several.", "options": "more."}
