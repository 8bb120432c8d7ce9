"""What the import readers share: the options, errors at lines, where each part of a request came
from, and the final check that makes an imported request a solvable one."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from service.core.errors import ValidationFailed
from service.solver.request import MAX_ERRORS, SolveRequestInvalid, parse_solve_request

# Where an editor breaks lines: CR LF, LF, or a lone CR.
LINE_BREAK = re.compile(rb"\r\n|\r|\n")
TEXT_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """The query parameters of an import (validated by the route)."""

    depot_lat: float | None = None
    depot_lon: float | None = None
    vehicles: int | None = None
    capacity: int | None = None
    scale: int = 1


@dataclass(frozen=True, slots=True)
class Source:
    """Where a part of the request came from: a line of the file (None: the file as a whole), and
    the `loc` of its errors (`["body", column]`, or `["query", parameter]`)."""

    line: int | None
    loc: tuple[str, ...] = ("body",)


@dataclass(slots=True)
class Issues:
    """The errors found so far, at most MAX_ERRORS."""

    found: list[dict[str, Any]] = field(default_factory=list)

    def add(self, source: Source, msg: str, kind: str) -> None:
        if len(self.found) < MAX_ERRORS:
            error: dict[str, Any] = {"loc": list(source.loc), "msg": msg, "type": kind}
            if source.loc[0] == "body":
                error["line"] = source.line
            self.found.append(error)

    def at(self, line: int | None, msg: str, kind: str, *loc: str) -> None:
        self.add(Source(line, ("body", *loc)), msg, kind)

    @property
    def full(self) -> bool:
        return len(self.found) >= MAX_ERRORS

    def __bool__(self) -> bool:
        return bool(self.found)

    def fail(self) -> ValidationFailed:
        return ValidationFailed(self.found, detail="The file cannot be imported (`errors` name its lines).")


@dataclass(slots=True)
class Read:
    """A file read into a request: the request, where each part came from (keyed by JSON pointer
    into the request: the longest prefix of an error's pointer names its source), and the name the
    file gives itself, if any."""

    request: dict[str, Any]
    sources: dict[str, Source]
    name: str | None = None
    # Errors in lines the reader left out of the request (a CSV row that is not a stop): reported
    # together with what the check finds in the rest.
    issues: Issues = field(default_factory=lambda: Issues())


@dataclass(frozen=True, slots=True)
class Imported:
    name: str | None
    document: bytes  # `{"request": …}`: a body as the scenario insert takes it


def decode(body: bytes, encoding: str, issues: Issues) -> str | None:
    """The body as text, or None (with the line of the first byte that is not in `encoding`)."""
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        line = len(LINE_BREAK.split(body[: exc.start]))
        issues.at(line, f"not valid {encoding.removesuffix('-sig')} text", "encoding")
        return None


def _source(sources: dict[str, Source], pointer: str) -> Source:
    parts = pointer.split("/")
    for end in range(len(parts), 0, -1):
        found = sources.get("/".join(parts[:end]))
        if found is not None:
            return found
    return Source(None)


def check_solvable(read: Read, max_stops: int) -> Imported:
    """The request checked as a solve checks it; its errors reported where they came from."""
    issues = read.issues
    try:
        parse_solve_request(read.request, max_stops=max_stops)
    except SolveRequestInvalid as exc:
        for error in exc.errors:
            issues.add(_source(read.sources, error["pointer"]), error["msg"], error["type"])
    if issues:
        issues.found.sort(key=lambda error: (error.get("line") is None, error.get("line") or 0))
        raise issues.fail()
    return Imported(read.name, orjson.dumps({"request": read.request}))
