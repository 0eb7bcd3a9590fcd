"""Sinks: where EVE records go. A sink is any object with ``handle(record)``.

Sinks that hold resources may also have ``close()``; :class:`SinkSet` calls it at the end.
One sink's failure is isolated: it is counted and reported once, the others carry on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any, Protocol

import orjson

from otids.alerts.eve import EveRecord


class Sink(Protocol):
    """Receives every EVE record (alerts, transactions, stats) in order."""

    def handle(self, record: EveRecord) -> None:
        """Deliver one record."""


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def dumps(record: EveRecord) -> bytes:
    """One record as compact JSON bytes (bytes values as hex, sets as lists)."""
    return orjson.dumps(record, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


class JsonLinesSink:
    """One JSON object per line (EVE-compatible) to a file, or stdout for ``-``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh: IO[bytes] = (
            sys.stdout.buffer if path == "-" else open(path, "wb")  # noqa: SIM115
        )

    def handle(self, record: EveRecord) -> None:
        """Write the record as one line."""
        self._fh.write(dumps(record) + b"\n")

    def close(self) -> None:
        """Flush, and close the file unless it is stdout."""
        self._fh.flush()
        if self._fh is not sys.stdout.buffer:
            self._fh.close()


class SinkSet:
    """Fans records out to every sink; a failing sink never stops the others."""

    def __init__(self, sinks: list[Any], on_error: Callable[[str], None] | None = None) -> None:
        self.sinks = sinks
        self.errors: dict[str, int] = {}
        self._on_error = on_error or (lambda msg: print(f"otids: warning: {msg}", file=sys.stderr))

    def handle(self, record: EveRecord) -> None:
        """Deliver ``record`` to every sink."""
        for sink in self.sinks:
            try:
                sink.handle(record)
            except Exception as exc:  # noqa: BLE001 - isolation is the point
                self._failed(sink, exc)

    def _failed(self, sink: Any, exc: Exception) -> None:
        name = type(sink).__name__
        self.errors[name] = self.errors.get(name, 0) + 1
        if self.errors[name] == 1:
            self._on_error(f"output {name} failed ({exc}); other outputs continue")

    def close(self) -> None:
        """Close every sink that can be closed, isolating failures the same way."""
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception as exc:  # noqa: BLE001
                self._failed(sink, exc)
