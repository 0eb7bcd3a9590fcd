"""Offline analysis on several CPU cores: flow-sharded worker processes.

Each worker reads the whole capture but keeps only the packets of its own flows (the
decoder's shard check: a hash of the last address bytes and low port bytes, the same in
both directions, into a bucket that a table gives to one worker, see :mod:`otids.balance`),
so every flow is dissected whole by one worker: the offline counterpart of
``PACKET_FANOUT``. Workers write alerts and transactions straight to the shared outputs
in whole lines; the parent merges their statistics and writes the final summary.

Reading the capture once per worker costs little next to dissection (the reader and the
shard check run at well over a million records a second), so two workers on two cores
nearly halve the time of a large capture. Output lines of different flows interleave in a
different order than with one worker; each flow's own records keep their order.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

# Below this much capture data one process is faster than starting several.
MIN_BYTES_PER_WORKER = 16 * 1024 * 1024
# A worker never takes longer than this to report once its capture is read; the bound keeps
# a parent from waiting forever on a worker that died without a word.
REPORT_TIMEOUT = 24 * 3600.0
# Allocations between young-generation collections while analysing (the default is 700): the
# pipeline makes little cyclic garbage, and each collection costs a pass over young objects.
ANALYSIS_GC_THRESHOLD = 50_000

Analysis = Callable[[tuple[int, int], bool], tuple[dict[str, Any], int]]


def auto_workers(capture_bytes: int) -> int:
    """How many workers suit ``capture_bytes`` of input on this machine."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cpus, capture_bytes // MIN_BYTES_PER_WORKER))


@contextlib.contextmanager
def analysis_heap() -> Iterator[None]:
    """Analyse with the objects of start-up (modules, rules) frozen, so that collections
    never scan them again (and forked workers never copy their pages by touching them), and
    with young-generation collections made rarer; both undone afterwards."""
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(ANALYSIS_GC_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def run_workers(count: int, analysis: Analysis) -> tuple[list[dict[str, Any]], int]:
    """Run ``analysis(shard, is_first)`` in ``count`` forked processes.

    Returns every worker's statistics and the highest exit code. ``is_first`` tells one
    worker to report what all of them see alike (capture warnings).
    """
    ctx = multiprocessing.get_context("fork")
    # One pipe per worker, its report read the moment it is written (no polling): the
    # parent sees end of file instead when the worker dies without a word.
    pipes = [ctx.Pipe(duplex=False) for _ in range(count)]

    def work(index: int) -> None:
        for other, (_, sender) in enumerate(pipes):
            if other != index:
                sender.close()  # else another worker's death would go unnoticed
        code = 1
        stats: dict[str, Any] = {}
        try:
            stats, code = analysis((index, count), index == 0)
        except KeyboardInterrupt:
            code = 130
        finally:
            sys.stdout.flush()  # before the report: the parent's summary comes last
            pipes[index][1].send((stats, code))

    procs = [ctx.Process(target=work, args=(i,), daemon=True) for i in range(count)]
    for p in procs:
        p.start()
    for _, sender in pipes:
        sender.close()
    pending: dict[Connection, int] = {receiver: i for i, (receiver, _) in enumerate(pipes)}
    parts: dict[int, dict[str, Any]] = {}
    worst = 0

    def receive(ready: list[Any]) -> None:
        nonlocal worst
        for conn in ready:
            index = pending.pop(conn)
            try:
                stats, code = conn.recv()
            except EOFError:
                continue  # the worker died without reporting
            parts[index] = stats
            worst = max(worst, code)

    deadline = time.monotonic() + REPORT_TIMEOUT
    try:
        while pending and (left := deadline - time.monotonic()) > 0:
            receive(wait(list(pending), timeout=left))
    except KeyboardInterrupt:
        worst = 130
        for p in procs:
            p.join(timeout=10)
        receive([conn for conn in list(pending) if conn.poll()])
    for p in procs:
        p.join(timeout=5)
    for receiver, _ in pipes:
        receiver.close()
    if len(parts) < count:
        worst = max(worst, 1)
    return [parts[i] for i in sorted(parts) if parts[i]], worst


def _add(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            into[key] = into.get(key, 0) + value
        elif isinstance(value, dict):
            _add(into.setdefault(key, {}), value)


# Decoder counters every worker counts alike (frames no shard owns): taken once.
_SHARED_DECODER = frozenset(
    {
        "non_ip",
        "not_tcp_udp",
        "malformed",
        "truncated",
        "unsupported_linktype",
        "ip_fragments",
        "ip_reassembled",
        "ip_frag_dropped",
    }
)


def merge_stats(parts: list[dict[str, Any]], elapsed: float) -> dict[str, Any]:
    """One ``stats`` object from the workers' (see :meth:`Pipeline.stats`)."""
    first = parts[0]
    decoder = {k: v for k, v in first["decoder"].items() if k in _SHARED_DECODER}
    for part in parts:
        for key, value in part["decoder"].items():
            if key not in _SHARED_DECODER and key != "other_shard":
                decoder[key] = decoder.get(key, 0) + value
    flows: dict[str, Any] = {}
    app: dict[str, Any] = {}
    events: dict[str, Any] = {}
    by_rule: dict[int, dict[str, Any]] = {}
    for part in parts:
        _add(flows, part["flows"])
        _add(app, part["app_layer"])
        _add(events, part["decoder_events"])
        for row in part["alerts"]["by_rule"]:
            have = by_rule.setdefault(row["sid"], {**row, "count": 0})
            have["count"] += row["count"]
    packets = first["capture"]["packets"]
    return {
        "final": True,
        "elapsed_s": round(elapsed, 3),
        "last_ts": max(p["last_ts"] for p in parts),
        "packets_per_s": round(packets / max(elapsed, 1e-9), 1),
        "workers": len(parts),
        "capture": first["capture"],
        "decoder": decoder,
        "flows": flows,
        "app_layer": app,
        "decoder_events": dict(sorted(events.items())),
        "alerts": {
            "total": sum(r["count"] for r in by_rule.values()),
            "by_rule": [by_rule[sid] for sid in sorted(by_rule)],
        },
    }


class LineWriter:
    """A text file for rich's Console that writes whole lines with one ``os.write`` each,
    so lines printed by several workers never tear."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._partial = ""

    def write(self, text: str) -> int:
        """Buffer ``text``; write every complete line."""
        data = self._partial + text
        head, sep, tail = data.rpartition("\n")
        self._partial = tail
        if sep:
            os.write(self.fd, (head + sep).encode())
        return len(text)

    def flush(self) -> None:
        """Write a trailing partial line, if any."""
        if self._partial:
            os.write(self.fd, self._partial.encode())
            self._partial = ""

    def isatty(self) -> bool:
        """Whether the descriptor is a terminal (rich decides on colours from it)."""
        return os.isatty(self.fd)

    def fileno(self) -> int:
        """The descriptor written to."""
        return self.fd
