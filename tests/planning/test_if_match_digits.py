"""If-Match names versions in ASCII digits only: a regular expression's `\\d` also matches other
scripts' digits, which int() reads as numbers."""

from __future__ import annotations

from service.core.preconditions import expected_versions


def test_if_match_names_versions_in_ascii_digits_only() -> None:
    assert expected_versions('"3"') == {3}
    assert expected_versions('"\u0663"') == frozenset()  # Arabic-Indic 3
    assert expected_versions('"\u0ae9"') == frozenset()  # Gujarati 3
    assert expected_versions('"\u00b3"') == frozenset()  # superscript 3
