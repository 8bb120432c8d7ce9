"""Whatever a file holds, reading it ends in a solvable request or a 422 naming lines — never another
exception (which would be a 500). The readers are functions of bytes: driven here directly, with
arbitrary bytes, arbitrary text, and mutations of files that import."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core.errors import ValidationFailed
from service.planning.import_kit import ImportOptions
from service.planning.imports import Format, read_file
from service.solver.request import parse_solve_request

DATA = Path(__file__).resolve().parents[1] / "kit" / "data"
CSV_OPTIONS = ImportOptions(depot_lat=52.5, depot_lon=13.4, vehicles=2, capacity=10)
CSV = b"id,lat,lon,demand,service_duration,tw_start,tw_end,required,prize\ns1,52.5,13.35,3,300,08:00,12:00,no,5\n"
VRPLIB = (DATA / "E-n22-k4.vrp").read_bytes()


def outcome(body: bytes, form: Format) -> None:
    options = CSV_OPTIONS if form == "csv" else ImportOptions()
    try:
        imported = read_file(body, form, "utf-8", options, 50)
    except ValidationFailed as exc:
        errors = exc.extra["errors"]
        assert 1 <= len(errors) <= 50
        for error in errors:
            assert error["loc"][0] in {"body", "query"}
            if error["loc"][0] == "body":
                line = error["line"]
                # Lines as an editor counts them: CR LF, LF or a lone CR ends one.
                lines = len(re.split(rb"\r\n|\r|\n", body))
                assert line is None or 1 <= line <= lines, (line, body)
        return
    parse_solve_request(orjson.loads(imported.document)["request"], max_stops=50)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.sampled_from(["csv", "vrplib"]))
def test_arbitrary_bytes(body: bytes, form: Format) -> None:
    outcome(body, form)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('0123456789-.,;:"# \t\r\nabeEOFSCTIN_x\x00\x0c')), max_size=300))
def test_text_made_of_the_formats_own_characters(text: str) -> None:
    outcome(text.encode(), "csv")
    outcome(text.encode(), "vrplib")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_files_that_import_mutated_anywhere(data: st.DataObject) -> None:
    for body, form in ((CSV, "csv"), (VRPLIB, "vrplib")):
        at = data.draw(st.integers(0, len(body) - 1))
        cut = data.draw(st.integers(0, 20))
        insert = data.draw(st.binary(max_size=8))
        outcome(body[:at] + insert + body[at + cut :], form)  # type: ignore[arg-type]
