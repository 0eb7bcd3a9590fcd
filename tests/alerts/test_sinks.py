"""Sinks: JSON lines output and the isolation of a failing sink."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from otids.alerts.sinks import JsonLinesSink, SinkSet


class Broken:
    def handle(self, record: dict[str, Any]) -> None:
        raise OSError("receiver is down")

    def close(self) -> None:
        raise OSError("still down")


class Keep:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    def handle(self, record: dict[str, Any]) -> None:
        self.got.append(record)


def test_failing_sink_does_not_stop_the_others() -> None:
    warnings: list[str] = []
    keep = Keep()
    sinks = SinkSet([Broken(), keep], on_error=warnings.append)
    for i in range(3):
        sinks.handle({"event_type": "alert", "n": i})
    sinks.close()
    assert [r["n"] for r in keep.got] == [0, 1, 2]
    assert sinks.errors == {"Broken": 4}  # three records and the close
    assert len(warnings) == 1 and "receiver is down" in warnings[0]


def test_json_lines(tmp_path: Path) -> None:
    out = tmp_path / "eve.json"
    sink = JsonLinesSink(str(out))
    sink.handle({"event_type": "modbus", "raw": b"\x01\x02", "set": {3}})
    sink.handle({"event_type": "stats"})
    sink.close()
    lines = out.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"event_type": "modbus", "raw": "0102", "set": [3]},
        {"event_type": "stats"},
    ]
