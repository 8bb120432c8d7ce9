"""A scenario imported from a file: a CSV of stops or a VRPLIB instance, read into a solvable request.

Each format has its reader (`csv_import`, `vrplib_import`), which checks the file's syntax line by
line and builds the request, remembering where in the file each part of it came from. The request
is then checked exactly as a solve would check it (`parse_solve_request`), and every error it finds
is reported at the line (or the query parameter) it came from: a file that imports is one that
solves. At most 50 errors, lines numbered from 1 as an editor numbers them.

Everything here is a function of the body's bytes and the options (picklable in and out), so a
large file is read in a worker process exactly as a small one is inline.
"""

from __future__ import annotations

from typing import Literal

from service.planning.csv_import import read_csv
from service.planning.import_kit import Imported, ImportOptions, check_solvable
from service.planning.vrplib_import import read_vrplib

Format = Literal["csv", "vrplib"]

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


def read_file(body: bytes, form: Format, charset: str, options: ImportOptions, max_stops: int) -> Imported:
    """The body as a solvable request, or ValidationFailed naming its lines."""
    reader = read_csv if form == "csv" else read_vrplib
    return check_solvable(reader(body, CHARSETS[charset], options, max_stops), max_stops)
