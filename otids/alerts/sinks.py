"""Sinks: where EVE records go. A sink is any object with ``handle(record)``.

Sinks that hold resources may also have ``close()``; :class:`SinkSet` calls it at the end.
One sink's failure is isolated: it is counted and reported once, the others carry on.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from typing import Any, Protocol

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


# orjson serialises a dict about twice as fast when it need not check for keys that are not
# strings: records are tried that way first, and again allowing such keys when one has them.
_ANY_KEYS = orjson.OPT_NON_STR_KEYS
_LINE = orjson.OPT_APPEND_NEWLINE


def dumps(record: EveRecord, option: int = 0) -> bytes:
    """One record as compact JSON bytes (bytes values as hex, sets as lists, keys that are
    not strings as strings); ``option``: more orjson options."""
    try:
        return orjson.dumps(record, default=_json_default, option=option)
    except orjson.JSONEncodeError:
        return orjson.dumps(record, default=_json_default, option=option | _ANY_KEYS)


class JsonLinesSink:
    """One JSON object per line (EVE-compatible) to a file, or stdout for ``-``.

    Lines are buffered and written whole, with one ``write`` per batch ending on a line
    boundary, so that several worker processes can append to the same file or pipe without
    tearing each other's lines: batches stay within the pipe's atomic write size on a pipe,
    socket or terminal, larger on a regular file (appends there are positioned atomically)
    or another device.
    """

    FILE_BATCH = 64 * 1024
    PIPE_BATCH = 4096  # PIPE_BUF on Linux: the largest write a pipe keeps in one piece

    def __init__(self, path: str, append: bool = False) -> None:
        self.path = path
        if path == "-":
            sys.stdout.flush()
            self._fd = sys.stdout.fileno()
            self._own = False
        else:
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
            self._fd = os.open(path, flags, 0o644)
            self._own = True
        mode = os.fstat(self._fd).st_mode
        # Only pipes, sockets and terminals need small writes; other devices (/dev/null) can
        # take a file's batches.
        shared = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(self._fd)
        self._batch = self.PIPE_BATCH if shared else self.FILE_BATCH
        self._lines: list[bytes] = []
        self._size = 0

    def handle(self, record: EveRecord) -> None:
        """Write the record as one line."""
        try:  # dumps(record, _LINE), inlined: this runs for every record
            line = orjson.dumps(record, default=_json_default, option=_LINE)
        except orjson.JSONEncodeError:
            line = dumps(record, _LINE)
        if self._size + len(line) > self._batch:
            self.flush()
        self._lines.append(line)
        self._size += len(line)

    def flush(self) -> None:
        """Write the buffered lines."""
        if not self._lines:
            return
        data = memoryview(b"".join(self._lines))
        self._lines = []
        self._size = 0
        while data:
            data = data[os.write(self._fd, data) :]

    def close(self) -> None:
        """Flush, and close the file unless it is stdout."""
        self.flush()
        if self._own:
            os.close(self._fd)
            self._own = False


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
            except Exception as exc:
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
            except Exception as exc:
                self._failed(sink, exc)
