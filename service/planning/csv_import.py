"""A CSV file of stops as a solvable request: one stop per row, the depot and the fleet from the query.

The header row names the columns, in any order: `id`, `lat`, `lon`, `demand` are required;
`service_duration`, `tw_start`, `tw_end`, `required`, `prize` are optional (see COLUMNS for units).
Fields are separated by commas (or semicolons, or tabs, when the header uses those instead) and
quoted as RFC 4180 quotes them. Empty rows are skipped; their lines still count.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable
from typing import Any

from service.planning.import_kit import TEXT_LINE_BREAK, ImportOptions, Issues, Read, Source, decode

# The column set, with what each holds (docs/api.md repeats this table).
COLUMNS: dict[str, str] = {
    "id": "the stop's id, unique",
    "lat": "WGS84 latitude, degrees",
    "lon": "WGS84 longitude, degrees",
    "demand": "what is delivered, a whole number in the vehicles' capacity unit",
    "service_duration": "seconds spent at the stop (default 0)",
    "tw_start": "earliest start of service: seconds from the start of the planning day, or HH:MM[:SS]",
    "tw_end": "latest start of service, as tw_start (both empty: no time window)",
    "required": "true/false, yes/no or 1/0 (default true: an optional stop is served only when worth it)",
    "prize": "collected when an optional stop is served, a whole number (default 0)",
}
REQUIRED = ("id", "lat", "lon", "demand")
_CLOCK = re.compile(r"(\d{1,3}):([0-5]\d)(?::([0-5]\d))?")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
# A stop's member → the column it came from.
_MEMBERS = {
    "id": "id",
    "location/lat": "lat",
    "location/lon": "lon",
    "location": "lat",
    "demand": "demand",
    "service_duration": "service_duration",
    "time_window": "tw_start",
    "time_window/0": "tw_start",
    "time_window/1": "tw_end",
    "required": "required",
    "prize": "prize",
}


class _Bad(ValueError):
    pass


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _Bad("must be a number") from None
    if not math.isfinite(value):
        raise _Bad("must be a finite number")
    return value


def _whole(text: str) -> int:
    value = _number(text)
    if not value.is_integer():
        raise _Bad("must be a whole number")
    return int(value)


def _seconds(text: str) -> int:
    clock = _CLOCK.fullmatch(text)
    if clock:
        hours, minutes, seconds = clock.groups()
        return int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
    try:
        return _whole(text)
    except _Bad:
        raise _Bad("must be seconds from the start of the day (a whole number) or HH:MM[:SS]") from None


def _boolean(text: str) -> bool:
    try:
        return _BOOLEANS[text.lower()]
    except KeyError:
        raise _Bad("must be true or false (yes/no, 1/0)") from None


_PARSERS: dict[str, Callable[[str], Any]] = {
    "lat": _number,
    "lon": _number,
    "demand": _whole,
    "service_duration": _seconds,
    "tw_start": _seconds,
    "tw_end": _seconds,
    "required": _boolean,
    "prize": _whole,
}


def _delimiter(header: str) -> str:
    if "," in header:
        return ","
    if ";" in header:
        return ";"
    return "\t" if "\t" in header else ","


def _header(row: list[str], issues: Issues) -> list[str] | None:
    columns = [name.strip().lower() for name in row]
    for position, name in enumerate(columns, start=1):
        if name not in COLUMNS:
            # Named by position: a message never repeats what the file says.
            issues.at(1, f"column {position} is none of {', '.join(COLUMNS)}", "csv_column")
    for name in dict.fromkeys(columns):
        if columns.count(name) > 1:
            issues.at(1, f"column {name!r} appears more than once", "csv_column")
    for name in REQUIRED:
        if name not in columns:
            issues.at(1, f"column {name!r} is required", "csv_column")
    return None if issues else columns


def _stop(values: dict[str, str], line: int, issues: Issues) -> dict[str, Any] | None:
    parsed: dict[str, Any] = {}
    for column, text in values.items():
        if column == "id" or not text:
            continue
        try:
            parsed[column] = _PARSERS[column](text)
        except _Bad as exc:
            issues.at(line, str(exc), "csv_value", column)
    for column in REQUIRED:
        if not values.get(column):
            issues.at(line, "must not be empty", "missing", column)
    if ("tw_start" in parsed) != ("tw_end" in parsed) and not {"tw_start", "tw_end"} & issues_columns(
        issues, line
    ):
        missing = "tw_end" if "tw_start" in parsed else "tw_start"
        issues.at(line, "a time window needs both tw_start and tw_end", "missing", missing)
    if any(error.get("line") == line for error in issues.found):
        return None
    stop: dict[str, Any] = {
        "id": values["id"],
        "location": {"lat": parsed["lat"], "lon": parsed["lon"]},
        "demand": parsed["demand"],
    }
    if "service_duration" in parsed:
        stop["service_duration"] = parsed["service_duration"]
    if "tw_start" in parsed:
        stop["time_window"] = [parsed["tw_start"], parsed["tw_end"]]
    if "required" in parsed:
        stop["required"] = parsed["required"]
    if "prize" in parsed:
        stop["prize"] = parsed["prize"]
    return stop


def issues_columns(issues: Issues, line: int) -> set[str]:
    """The columns already reported at `line`."""
    return {str(error["loc"][-1]) for error in issues.found if error.get("line") == line}


def _free(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3`… whichever no stop uses."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def read_csv(body: bytes, encoding: str, options: ImportOptions, max_stops: int) -> Read:
    issues = Issues()
    text = decode(body, encoding, issues)
    if text is None:
        raise issues.fail()
    first_line = TEXT_LINE_BREAK.split(text, maxsplit=1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first_line), strict=True)
    stops: list[dict[str, Any]] = []
    lines: list[int] = []
    columns: list[str] | None = None
    ended = 0  # the last line of the previous record
    try:
        for row in reader:
            line, ended = ended + 1, reader.line_num
            if columns is None:
                columns = _header(row, issues)
                if columns is None:
                    raise issues.fail()
                continue
            if not any(field.strip() for field in row):
                continue
            if len(row) != len(columns):
                issues.at(line, f"{len(row)} fields where the header has {len(columns)}", "csv_fields")
            elif len(stops) == max_stops:
                issues.at(line, f"at most {max_stops} stops can be imported", "too_many_stops")
                break
            else:
                stop = _stop({c: v.strip() for c, v in zip(columns, row, strict=True)}, line, issues)
                if stop is not None:
                    stops.append(stop)
                    lines.append(line)
            if issues.full:
                break
    except csv.Error as exc:
        # Quoting the file cannot recover from (an unclosed quote, a NUL): nothing after it is read.
        issues.at(reader.line_num, f"not valid CSV: {exc}", "csv_syntax")
    if columns is None:
        issues.at(1, "the file is empty: a header row is needed", "csv_header")
    elif not stops and not issues:
        last = len(TEXT_LINE_BREAK.split(text))
        issues.at(min(ended + 1, last), "no stops: a row per stop is needed after the header", "csv_rows")
    if not stops or issues.full:
        raise issues.fail()
    # The rows that are stops are checked as a solve would check them, beside the errors so far.
    return _request(stops, lines, options, issues)


def _request(stops: list[dict[str, Any]], lines: list[int], options: ImportOptions, issues: Issues) -> Read:
    taken = {stop["id"] for stop in stops}
    depot, vehicle = _free("depot", taken), _free("vehicle", taken | {"depot"})
    request = {
        "depots": [{"id": depot, "location": {"lat": options.depot_lat, "lon": options.depot_lon}}],
        "stops": stops,
        "vehicle_types": [
            {"id": vehicle, "count": options.vehicles, "capacity": options.capacity, "depot": depot}
        ],
    }
    sources = {
        "/depots": Source(None, ("query", "depot_lat")),
        "/depots/0/location/lon": Source(None, ("query", "depot_lon")),
        "/vehicle_types": Source(None, ("query", "vehicles")),
        "/vehicle_types/0/capacity": Source(None, ("query", "capacity")),
    }
    for index, line in enumerate(lines):
        sources[f"/stops/{index}"] = Source(line)
        for member, column in _MEMBERS.items():
            sources[f"/stops/{index}/{member}"] = Source(line, ("body", column))
    return Read(request=request, sources=sources, issues=issues)
