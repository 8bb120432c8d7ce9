"""ETags from a row's `version`, and the If-Match precondition of a write (RFC 9110 §13.1.1)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, Response

from service.core.errors import ValidationFailed

# A strong entity-tag: If-Match compares strongly, so a weak W/"n" never matches (RFC 9110 §8.8.3.2).
# ASCII digits only: `\d` would also match other scripts' digits, which int() reads as numbers.
_STRONG_TAG = re.compile(r'[ \t]*"([0-9]{1,18})"[ \t]*')
# `version` is an int4 counting up from 1: a tag past this can never match a stored row.
_MAX_VERSION = 2**31 - 1
# A client holds one current ETag, at most a few it would accept; a long list is a mistake or an attack.
MAX_TAGS = 32


def etag(version: int) -> str:
    return f'"{version}"'


def tagged(version: int, location: str | None = None) -> dict[str, str]:
    """A response's ETag header (and, for a new resource, its Location)."""
    headers = {"ETag": etag(version)}
    if location is not None:
        headers["Location"] = location
    return headers


def tag(response: Response, version: int, location: str | None = None) -> None:
    """`tagged` set on the response FastAPI sends."""
    response.headers.update(tagged(version, location))


def expected_versions(if_match: str | None) -> frozenset[int] | None:
    """The versions a write may apply to; None when any will do (no header, or `*`).

    A header that names no usable tag (weak, malformed, or past any version a row can hold) yields
    the empty set: the write then fails its precondition (412) rather than going through unchecked.
    More than MAX_TAGS members is a 422.
    """
    if if_match is None or if_match.strip() == "*":
        return None
    members = if_match.split(",")
    if len(members) > MAX_TAGS:
        raise ValidationFailed(
            [
                {
                    "loc": ["header", "If-Match"],
                    "msg": f"If-Match may list at most {MAX_TAGS} entity-tags.",
                    "type": "too_many_tags",
                }
            ]
        )
    versions: set[int] = set()
    for member in members:
        match = _STRONG_TAG.fullmatch(member)
        if match and int(match.group(1)) <= _MAX_VERSION:
            versions.add(int(match.group(1)))
    return frozenset(versions)


async def _if_match(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description=(
                'The `ETag` of the last read (e.g. `"3"`); the write is refused with 412 if it changed '
                f"since. At most {MAX_TAGS} entity-tags (more is a 422)."
            ),
        ),
    ] = None,
) -> frozenset[int] | None:
    return expected_versions(if_match)


ExpectedVersions = Annotated[frozenset[int] | None, Depends(_if_match)]
