"""A VRPLIB instance (CVRP, VRPTW) as a solvable request, parsed by the `vrplib` package.

`vrplib` reads a well-formed instance, but says nothing of where a malformed one goes wrong, and
reads each section's rows by position (a row's node number is dropped, not checked). So every line
is checked here first, with its number: the specifications, each section's rows (node numbers 1, 2,
… in order, as many as DIMENSION says), the depot list. Only a file that passes is handed to
`vrplib`, as the lines checked here (so both read the same lines), and the request is built from
what it parsed.

Ids: the depot is `depot`, each stop is its node number minus one — the numbering of VRPLIB
solution files, whose routes name the customers 1 … n (the depot being node 1). Places are planar
x/y; without an explicit matrix, the solver's distances are Euclidean rounded to the nearest
integer, which is EUC_2D's definition. `scale` multiplies coordinates, times and explicit weights
first: instances whose best known values use real-valued distances (Solomon's) keep one decimal
with scale 10, as the DIMACS challenge measured them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import vrplib

from service.planning.import_kit import TEXT_LINE_BREAK, ImportOptions, Issues, Read, Source, decode
from service.solver.request import MAX_INT

SUPPORTED_TYPES = {"CVRP", "VRPTW", "CVRPTW"}
EDGE_WEIGHT_TYPES = {"EUC_2D", "EXPLICIT"}
EDGE_WEIGHT_FORMATS = {"FULL_MATRIX", "LOWER_ROW"}
# Specifications read (the others would constrain the problem in ways this import cannot say).
_SPECS = (
    "NAME",
    "COMMENT",
    "TYPE",
    "DIMENSION",
    "CAPACITY",
    "VEHICLES",
    "EDGE_WEIGHT_TYPE",
    "EDGE_WEIGHT_FORMAT",
    "SERVICE_TIME",
    "NODE_COORD_TYPE",
    "DISPLAY_DATA_TYPE",
)
# Per-node sections: the values after the node number.
_NODE_SECTIONS = {"NODE_COORD": 2, "DEMAND": 1, "TIME_WINDOW": 2, "SERVICE_TIME": 1, "DISPLAY_DATA": 2}
_SECTIONS = tuple(f"{name}_SECTION" for name in (*_NODE_SECTIONS, "DEPOT", "EDGE_WEIGHT"))
# Upper case, as `vrplib` finds sections (by "_SECTION" in a line).
_SECTION = re.compile(r"([A-Z][A-Z0-9_]*)_SECTION\s*:?")
# Characters str.splitlines() breaks lines at besides \n and \r: `vrplib` would see two lines where
# an editor shows one.
_LINE_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


@dataclass(slots=True)
class _Section:
    name: str
    line: int
    rows: list[tuple[int, list[str]]] = field(default_factory=list)


@dataclass(slots=True)
class _Scan:
    specs: dict[str, tuple[int, str]] = field(default_factory=dict)
    sections: dict[str, _Section] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)  # the lines handed to vrplib


def _scan(text: str, issues: Issues) -> _Scan:
    scan = _Scan()
    current: _Section | None = None
    for number, raw in enumerate(TEXT_LINE_BREAK.split(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if _LINE_BREAKS.search(line):
            issues.at(number, "contains a control character", "vrplib_syntax")
            continue
        if line == "EOF":
            break
        if "EOF" in line:
            # `vrplib` ends the file at any line holding EOF.
            issues.at(number, "EOF must stand alone on its line", "vrplib_syntax")
            continue
        header = _SECTION.fullmatch(line)
        if header:
            name = header.group(1)
            if f"{name}_SECTION" not in _SECTIONS:
                issues.at(number, f"this section is none of {', '.join(_SECTIONS)}", "vrplib_section")
            elif name in scan.sections:
                issues.at(number, "this section appears twice", "vrplib_section")
            current = _Section(name, number)
            scan.sections.setdefault(name, current)
        elif "_SECTION" in line:
            issues.at(number, "a section header is NAME_SECTION alone on its line", "vrplib_syntax")
        elif ":" in line:
            if current is not None:
                issues.at(number, "specifications must come before the data sections", "vrplib_syntax")
                continue
            key, _, value = line.partition(":")
            key, value = key.strip().upper(), value.strip()
            if key not in _SPECS:
                issues.at(number, f"this specification is none of {', '.join(_SPECS)}", "vrplib_spec")
            elif key in scan.specs:
                issues.at(number, "this specification is given twice", "vrplib_spec")
            else:
                scan.specs[key] = (number, value)
        elif current is None:
            issues.at(
                number, "expected a KEY : VALUE specification or a NAME_SECTION header", "vrplib_syntax"
            )
        else:
            current.rows.append((number, line.split()))
        scan.kept.append(line)
        if issues.full:
            break
    return scan


def _spec_int(scan: _Scan, key: str, issues: Issues, low: int, high: int = MAX_INT) -> int | None:
    if key not in scan.specs:
        return None
    line, value = scan.specs[key]
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (number.is_integer() and low <= number <= high):
        issues.at(line, f"{key} must be a whole number from {low} to {high}", "vrplib_spec")
        return None
    return int(number)


def _is_number(token: str) -> bool:
    try:
        return math.isfinite(float(token))
    except ValueError:
        return False


def _check_node_section(section: _Section, dimension: int, issues: Issues) -> None:
    width = _NODE_SECTIONS[section.name] + 1
    for expected, (line, tokens) in enumerate(section.rows, start=1):
        if len(tokens) != width:
            issues.at(line, f"{section.name}_SECTION rows have {width} values", "vrplib_row")
        elif tokens[0] != str(expected):
            issues.at(line, f"expected node {expected}: rows must run 1 to DIMENSION in order", "vrplib_row")
        elif not all(_is_number(token) for token in tokens[1:]):
            issues.at(line, "values must be numbers", "vrplib_row")
        elif section.name == "DEMAND" and not float(tokens[1]).is_integer():
            issues.at(line, "a demand must be a whole number", "vrplib_row")
        elif section.name == "TIME_WINDOW" and float(tokens[1]) > float(tokens[2]):
            issues.at(line, "a time window's start must not be after its end", "vrplib_row")
    if len(section.rows) != dimension:
        issues.at(
            section.line,
            f"{section.name}_SECTION has {len(section.rows)} rows where DIMENSION is {dimension}",
            "vrplib_rows",
        )


def _check_depots(section: _Section, dimension: int, issues: Issues) -> int:
    """The depot's node number (1 when there is no DEPOT_SECTION)."""
    depots: list[int] = []
    ended = False
    for line, tokens in section.rows:
        if ended:
            issues.at(line, "nothing may follow the -1 that ends DEPOT_SECTION", "vrplib_row")
        elif len(tokens) != 1 or not re.fullmatch(r"-?\d+", tokens[0]):
            issues.at(line, "DEPOT_SECTION rows hold one node number", "vrplib_row")
        elif tokens[0] == "-1":
            ended = True
        elif not 1 <= int(tokens[0]) <= dimension:
            issues.at(line, "not a node: node numbers run from 1 to DIMENSION", "vrplib_row")
        elif depots:
            issues.at(line, "only one depot can be imported", "vrplib_row")
        else:
            depots.append(int(tokens[0]))
    if not depots:
        issues.at(section.line, "DEPOT_SECTION names no depot", "vrplib_rows")
        return 1
    return depots[0]


def _check_weights(section: _Section, dimension: int, form: str, issues: Issues) -> None:
    """LOWER_ROW may wrap its values across lines at will; `vrplib` reads FULL_MATRIX a row a line."""
    count = 0
    for line, tokens in section.rows:
        count += len(tokens)
        if not all(_is_number(token) and float(token) >= 0 for token in tokens):
            issues.at(line, "edge weights must be numbers >= 0", "vrplib_row")
        elif form == "FULL_MATRIX" and len(tokens) != dimension:
            issues.at(line, f"FULL_MATRIX rows hold DIMENSION ({dimension}) weights each", "vrplib_row")
    expected = dimension * dimension if form == "FULL_MATRIX" else dimension * (dimension - 1) // 2
    if count != expected:
        issues.at(
            section.line,
            f"EDGE_WEIGHT_SECTION holds {count} weights where {form} of DIMENSION {dimension} has {expected}",
            "vrplib_rows",
        )


@dataclass(frozen=True, slots=True)
class _Shape:
    dimension: int
    depot: int
    explicit: bool
    capacity: int
    vehicles: int


def _check(scan: _Scan, options: ImportOptions, max_stops: int, issues: Issues) -> _Shape | None:
    """Everything about the file as a whole, once its lines are known."""
    specs, sections = scan.specs, scan.sections
    if "TYPE" in specs and specs["TYPE"][1].upper() not in SUPPORTED_TYPES:
        issues.at(
            specs["TYPE"][0], f"TYPE must be one of {', '.join(sorted(SUPPORTED_TYPES))}", "vrplib_spec"
        )
    # Keywords are upper case, as `vrplib` compares them.
    weight_type = specs.get("EDGE_WEIGHT_TYPE", (None, "EUC_2D"))
    if weight_type[1] not in EDGE_WEIGHT_TYPES:
        issues.at(weight_type[0], "EDGE_WEIGHT_TYPE must be EUC_2D or EXPLICIT", "vrplib_spec")
    explicit = weight_type[1] == "EXPLICIT"
    weight_form = specs.get("EDGE_WEIGHT_FORMAT", (None, ""))[1]
    if explicit and weight_form not in EDGE_WEIGHT_FORMATS:
        line = specs.get("EDGE_WEIGHT_FORMAT", weight_type)[0]
        issues.at(line, "EDGE_WEIGHT_FORMAT must be FULL_MATRIX or LOWER_ROW", "vrplib_spec")
    dimension = _spec_int(scan, "DIMENSION", issues, 2, max_stops + 1)
    capacity = _spec_int(scan, "CAPACITY", issues, 0)
    vehicles = _spec_int(scan, "VEHICLES", issues, 1)
    if "SERVICE_TIME" in specs and not (
        _is_number(specs["SERVICE_TIME"][1]) and float(specs["SERVICE_TIME"][1]) >= 0
    ):
        issues.at(specs["SERVICE_TIME"][0], "SERVICE_TIME must be a number >= 0", "vrplib_spec")
    if "SERVICE_TIME" in specs and "SERVICE_TIME" in sections:
        issues.at(sections["SERVICE_TIME"].line, "SERVICE_TIME is already a specification", "vrplib_section")
    if "DIMENSION" not in specs:
        issues.at(None, "DIMENSION is required", "vrplib_spec")
    if capacity is None and options.capacity is None and "CAPACITY" not in specs:
        issues.at(None, "CAPACITY is required (or the capacity query parameter)", "vrplib_spec")
    required = ["DEMAND", "EDGE_WEIGHT" if explicit else "NODE_COORD"]
    for name in required:
        if name not in sections:
            issues.at(None, f"{name}_SECTION is required", "vrplib_section")
    if dimension is None:
        return None
    for name, section in sections.items():
        if name in _NODE_SECTIONS:
            _check_node_section(section, dimension, issues)
        elif name == "EDGE_WEIGHT" and explicit and weight_form in EDGE_WEIGHT_FORMATS:
            _check_weights(section, dimension, weight_form, issues)
    depot = _check_depots(sections["DEPOT"], dimension, issues) if "DEPOT" in sections else 1
    if issues:
        return None
    return _Shape(
        dimension=dimension,
        depot=depot,
        explicit=explicit,
        capacity=options.capacity if options.capacity is not None else capacity or 0,
        vehicles=options.vehicles or vehicles or dimension - 1,
    )


def read_vrplib(body: bytes, encoding: str, options: ImportOptions, max_stops: int) -> Read:
    issues = Issues()
    text = decode(body, encoding, issues)
    if text is None:
        raise issues.fail()
    scan = _scan(text, issues)
    shape = None if issues.full else _check(scan, options, max_stops, issues)
    if shape is None or issues:
        if not issues:
            issues.at(None, "the file holds no VRPLIB instance", "vrplib_syntax")
        raise issues.fail()
    try:
        parsed = vrplib.parse.parse_vrplib("\n".join(scan.kept), compute_edge_weights=False)
        return _request(parsed, scan, shape, options)
    except Exception:
        # A third-party parser, and arrays built from what it made of a client's file: whatever
        # slipped past the line checks is the file's fault, a 422, never a 500.
        issues.at(None, "the file could not be read as a VRPLIB instance", "vrplib_syntax")
        raise issues.fail() from None


def _rows(parsed: dict[str, Any], key: str, shape: _Shape) -> np.ndarray[Any, Any] | None:
    values = parsed.get(key)
    return None if values is None else np.asarray(values, dtype=np.float64).reshape(shape.dimension, -1)


def _request(parsed: dict[str, Any], scan: _Scan, shape: _Shape, options: ImportOptions) -> Read:
    scale = options.scale
    coords = _rows(parsed, "node_coord", shape)
    if coords is None:
        coords = _rows(parsed, "display_data", shape)
    if coords is None:  # an explicit matrix without places: they are only drawn, never measured
        coords = np.zeros((shape.dimension, 2))
    coords = coords * scale
    demands = _rows(parsed, "demand", shape)
    assert demands is not None
    windows = _rows(parsed, "time_window", shape)
    services = _rows(parsed, "service_time", shape) if "SERVICE_TIME" in scan.sections else None
    if "SERVICE_TIME" in scan.specs:
        services = np.full((shape.dimension, 1), float(scan.specs["SERVICE_TIME"][1]))

    def place(node: int) -> dict[str, float]:
        return {"x": float(coords[node][0]), "y": float(coords[node][1])}

    def time(value: float) -> int:
        return min(round(value * scale), MAX_INT)

    depot = shape.depot - 1
    nodes = [node for node in range(shape.dimension) if node != depot]
    depot_entry: dict[str, Any] = {"id": "depot", "location": place(depot)}
    vehicle: dict[str, Any] = {
        "id": "vehicle",
        "count": shape.vehicles,
        "capacity": shape.capacity,
        "depot": "depot",
    }
    if windows is not None:
        # As PyVRP's own reader does: the depot's window is also the vehicles' shift.
        depot_entry["time_window"] = vehicle["shift"] = [time(windows[depot][0]), time(windows[depot][1])]
    stops: list[dict[str, Any]] = []
    for node in nodes:
        stop: dict[str, Any] = {"id": str(node), "location": place(node), "demand": int(demands[node][0])}
        if services is not None and services[node][0]:
            stop["service_duration"] = time(services[node][0])
        if windows is not None:
            stop["time_window"] = [time(windows[node][0]), time(windows[node][1])]
        stops.append(stop)
    request: dict[str, Any] = {"depots": [depot_entry], "stops": stops, "vehicle_types": [vehicle]}
    if shape.explicit:
        order = [depot, *nodes]
        weights = np.asarray(parsed["edge_weight"], dtype=np.float64)[np.ix_(order, order)]
        matrix = np.minimum(np.rint(weights * scale), MAX_INT).astype(np.int64)
        request["matrix"] = {"distances": matrix.tolist()}
    return Read(request=request, sources=_sources(scan, shape, nodes, options), name=_name(scan))


def _name(scan: _Scan) -> str | None:
    name = scan.specs.get("NAME", (0, ""))[1].replace("\x00", "").strip()[:200]
    return name or None


def _sources(scan: _Scan, shape: _Shape, nodes: list[int], options: ImportOptions) -> dict[str, Source]:
    sections, specs = scan.sections, scan.specs

    def row_of(section: str, node: int) -> Source | None:
        found = sections.get(section)
        return None if found is None else Source(found.rows[node][0], ("body", f"{section}_SECTION"))

    def given(key: str, parameter: str, value: int | None) -> Source:
        """The query parameter when it was given, else the specification's line."""
        if value is not None:
            return Source(None, ("query", parameter))
        return Source(specs[key][0], ("body", key)) if key in specs else Source(None)

    depot = shape.depot - 1
    sources: dict[str, Source] = {
        "/vehicle_types/0/count": given("VEHICLES", "vehicles", options.vehicles),
        "/vehicle_types/0/capacity": given("CAPACITY", "capacity", options.capacity),
        "/vehicle_types/0/shift": row_of("TIME_WINDOW", depot) or Source(None),
        "/depots/0": row_of("NODE_COORD", depot) or Source(None),
        "/depots/0/time_window": row_of("TIME_WINDOW", depot) or Source(None),
    }
    if "EDGE_WEIGHT" in sections:
        sources["/matrix"] = Source(sections["EDGE_WEIGHT"].line, ("body", "EDGE_WEIGHT_SECTION"))
    service_spec = (
        Source(specs["SERVICE_TIME"][0], ("body", "SERVICE_TIME")) if "SERVICE_TIME" in specs else None
    )
    members = (
        ("", "NODE_COORD"),
        ("/location", "NODE_COORD"),
        ("/demand", "DEMAND"),
        ("/time_window", "TIME_WINDOW"),
        ("/service_duration", "SERVICE_TIME"),
    )
    for index, node in enumerate(nodes):
        where = f"/stops/{index}"
        for member, section in members:
            found = row_of(section, node)
            if found is not None:
                sources[where + member] = found
        if where + "/service_duration" not in sources and service_spec is not None:
            sources[where + "/service_duration"] = service_spec
        if where not in sources:  # no coordinates: the demand's row stands for the stop
            sources[where] = sources[where + "/demand"]
    return sources
