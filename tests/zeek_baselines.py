"""Readers of Zeek's test baselines (TSV logs, event output), shared by the corpus tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def zeek_log(path: Path) -> list[dict[str, str]]:
    """Rows of a Zeek TSV log as dicts of raw strings."""
    fields: list[str] = []
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=True)))
    return rows


def zeek_value(text: str) -> Any:
    """A Zeek cell: unset (None), empty vector, count, vector of counts, or text."""
    if text == "-":
        return None
    if text == "(empty)":
        return []
    if "," in text:
        return [int(item) for item in text.split(",")]
    return int(text) if text.isdigit() else text


def zeek_response_headers(trace_dir: Path) -> tuple[list[tuple[int, ...]], int]:
    """Object headers of the DNP3 responses in a trace's Zeek event output
    (``baseline.output``), and its count of response data objects."""
    headers, is_response, data_objects = [], False, 0
    for line in (trace_dir / "baseline.output").read_text().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if fields[0] == "dnp3_application_request_header":
            is_response = False
        elif fields[0] == "dnp3_application_response_header":
            is_response = True
        elif fields[0] == "dnp3_object_header" and is_response:
            headers.append(tuple(int(f) for f in fields[2:]))
        elif fields[0] == "dnp3_response_data_object":
            data_objects += 1
    return headers, data_objects
