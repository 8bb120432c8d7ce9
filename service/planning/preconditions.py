"""ETags from a row's `version`, and the If-Match precondition of a write (RFC 9110 §13.1.1)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header

# A strong entity-tag: If-Match compares strongly, so a weak W/"n" never matches (RFC 9110 §8.8.3.2).
_STRONG_TAG = re.compile(r'\s*"(\d{1,18})"\s*')


def etag(version: int) -> str:
    return f'"{version}"'


def expected_versions(if_match: str | None) -> frozenset[int] | None:
    """The versions a write may apply to; None when any will do (no header, or `*`).

    A header that names no usable tag yields the empty set: the write then fails its precondition
    (412) rather than going through unchecked.
    """
    if if_match is None or if_match.strip() == "*":
        return None
    versions: set[int] = set()
    for member in if_match.split(","):
        match = _STRONG_TAG.fullmatch(member)
        if match:
            versions.add(int(match.group(1)))
    return frozenset(versions)


def _if_match(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description='The `ETag` of the last read (e.g. `"3"`); the write is refused with 412 if it changed since.',
        ),
    ] = None,
) -> frozenset[int] | None:
    return expected_versions(if_match)


ExpectedVersions = Annotated[frozenset[int] | None, Depends(_if_match)]
