"""A scenario imported from a file: a CSV of stops or a VRPLIB instance, read into a solvable request.

Each format has its reader (`csv_import`, `vrplib_import`), which checks the file's syntax line by
line and builds the request, remembering where in the file each part of it came from. The request
is then checked exactly as a solve would check it (`parse_solve_request`), and every error it finds
is reported at the line (or the query parameter) it came from: a file that imports is one that
solves. At most 50 errors, lines numbered from 1 as an editor numbers them.

Reading (`read_file`) is a function of the body's bytes and the options (picklable in and out), so
a large file is read in a worker process exactly as a small one is inline.
"""

from __future__ import annotations

from typing import Any, Literal

from service.core.errors import UnsupportedMediaType, ValidationFailed
from service.core.middleware import media_type
from service.planning.csv_import import read_csv
from service.planning.import_kit import Imported, ImportOptions, check_solvable
from service.planning.schemas import ImportQuery
from service.planning.vrplib_import import read_vrplib

Format = Literal["csv", "vrplib"]
# The media types an import takes, and the format each names.
IMPORT_FORMATS: dict[str, Format] = {"text/csv": "csv", "text/plain": "vrplib"}

# The charsets a file may declare (Content-Type's charset); UTF-8 when it declares none. Spreadsheet
# programs still write CSV in Windows-1252.
CHARSETS = {
    "utf-8": "utf-8-sig",
    "utf8": "utf-8-sig",
    "us-ascii": "ascii",
    "iso-8859-1": "latin-1",
    "latin1": "latin-1",
    "latin-1": "latin-1",
    "iso-8859-15": "iso-8859-15",
    "windows-1252": "cp1252",
    "cp1252": "cp1252",
}


_CSV_NEEDS = ("depot_lat", "depot_lon", "vehicles", "capacity")


def file_format(content_type: str) -> tuple[Format, str]:
    """(format, charset) of a Content-Type; 415 for any other media type or charset."""
    form = IMPORT_FORMATS.get(media_type(content_type))
    if form is None:
        raise UnsupportedMediaType("The body must be text/csv (stops) or text/plain (a VRPLIB instance).")
    charset = "utf-8"
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if charset not in CHARSETS:
        raise UnsupportedMediaType(f"The charset must be one of: {', '.join(sorted(CHARSETS))}.")
    return form, charset


def options_for(form: Format, query: ImportQuery) -> ImportOptions:
    """The options a format reads; 422 for one it needs and lacks, or one it has no use for."""
    errors: list[dict[str, Any]] = []
    if form == "csv":
        errors += [
            {"loc": ["query", name], "msg": "Required for a CSV file.", "type": "required_for_csv"}
            for name in _CSV_NEEDS
            if getattr(query, name) is None
        ]
        if query.scale != 1:
            errors.append(
                {"loc": ["query", "scale"], "msg": "Only for a VRPLIB file.", "type": "not_for_this_format"}
            )
    else:
        errors += [
            {
                "loc": ["query", name],
                "msg": "Only for a CSV file: a VRPLIB file places its depot.",
                "type": "not_for_this_format",
            }
            for name in ("depot_lat", "depot_lon")
            if getattr(query, name) is not None
        ]
    if errors:
        raise ValidationFailed(errors)
    return ImportOptions(
        depot_lat=query.depot_lat,
        depot_lon=query.depot_lon,
        vehicles=query.vehicles,
        capacity=query.capacity,
        scale=query.scale,
    )


def read_file(body: bytes, form: Format, charset: str, options: ImportOptions, max_stops: int) -> Imported:
    """The body as a solvable request, or ValidationFailed naming its lines."""
    reader = read_csv if form == "csv" else read_vrplib
    return check_solvable(reader(body, CHARSETS[charset], options, max_stops), max_stops)
