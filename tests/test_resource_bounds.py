"""Floods stay within the named memory bounds, and the statistics say what was shed.

Small versions of the floods of bench/flood.py (which measures peak RSS at up to hundreds
of thousands of packets, ``make bench-flood``), fed straight into the pipeline; the checks
are on counters and on the size of the bounded structures, never on timing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from otids.capture.flow import MAX_FLOWS
from otids.capture.ipfrag import MAX_PENDING_DATAGRAMS
from otids.capture.tcp import MAX_OOO_BYTES, MAX_OOO_SEGMENTS
from otids.decode.dnp3.transport import MAX_FRAGMENT, MAX_SEGMENT_DATA
from otids.decode.modbus import REQUEST_FLOOD
from otids.pipeline import Pipeline
from otids.rules.engine import RuleSet

REPO = Path(__file__).resolve().parents[1]


def _load_flood() -> ModuleType:
    """bench/flood.py as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("flood", REPO / "bench" / "flood.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


flood = _load_flood()


class _Null:
    def handle(self, record: dict[str, object]) -> None:
        pass


def run(frames: Iterator[tuple[float, bytes]]) -> Pipeline:
    """Analyse crafted Ethernet frames; return the pipeline, before finish()."""
    pipeline = Pipeline(RuleSet([]), _Null())
    pipeline.run((ts, 1, frame, len(frame)) for ts, frame in frames)
    return pipeline


def test_syn_flood_evicts_and_bounds_the_flow_table() -> None:
    """More SYN sources than MAX_FLOWS: the table never exceeds it, evictions are counted."""
    count = MAX_FLOWS + MAX_FLOWS // 4
    pipeline = run(flood.syn_flood(count))
    assert len(pipeline.flows) <= MAX_FLOWS
    stats = pipeline.stats()
    assert stats["flows"]["total"] == count
    assert stats["flows"]["evicted"] >= count - MAX_FLOWS
    assert stats["flows"]["evicted"] + stats["flows"]["active"] == count


def test_unanswered_requests_raise_flooded_once_and_bound_pending() -> None:
    """Endless unanswered Modbus requests: ``modbus.flooded`` once, pending requests bounded."""
    pipeline = run(flood.request_flood(REQUEST_FLOOD * 3))
    assert pipeline.events["modbus.flooded"] == 1
    (flow,) = pipeline.flows._flows()
    assert len(flow.app._pending) <= REQUEST_FLOOD
    assert pipeline.stats()["app_layer"]["modbus"]["transactions"] >= REQUEST_FLOOD


def test_endless_dnp3_fragment_is_cut_at_the_reassembly_bound() -> None:
    """A fragment that never ends: ``dnp3.too_long_reassembly`` once it passes MAX_FRAGMENT
    octets, then its further segments are dropped without holding memory (one event, not
    one per segment: the flood would otherwise turn into an alert flood)."""
    segments = 64 * 5
    assert segments * MAX_SEGMENT_DATA > 4 * MAX_FRAGMENT
    pipeline = run(flood.dnp3_fragment_flood(segments + 3))
    assert pipeline.events["dnp3.too_long_reassembly"] == 1
    (flow,) = pipeline.flows._flows()
    for partial in flow.app._transport._partials.values():
        assert partial.data is None or len(partial.data) <= MAX_FRAGMENT  # None: discarding


def test_out_of_order_flood_overflows_the_bounded_buffer() -> None:
    """Data past a hole never filled: ``stream.ooo_overflow``, the buffer within bounds."""
    pipeline = run(flood.ooo_flood(3 + MAX_OOO_SEGMENTS * 4))
    assert pipeline.events["stream.ooo_overflow"] >= 1
    for flow in pipeline.flows._flows():
        for stream in flow.streams or ():
            assert len(stream.ooo) <= MAX_OOO_SEGMENTS
            assert stream.ooo_size <= MAX_OOO_BYTES


def test_fragment_flood_bounds_pending_datagrams() -> None:
    """First fragments of ever new datagrams: pending datagrams bounded, the rest dropped
    and counted."""
    count = MAX_PENDING_DATAGRAMS * 2
    pipeline = run(flood.ipfrag_flood(count))
    decoder = pipeline.decoder
    assert decoder.ip_fragments == count
    assert len(decoder._frag._pending) <= MAX_PENDING_DATAGRAMS
    assert decoder.ip_frag_dropped >= count - MAX_PENDING_DATAGRAMS
    assert decoder.ip_reassembled == 0


@pytest.mark.parametrize("name", sorted(flood.FLOODS))
def test_flood_pcaps_are_readable(name: str, tmp_path: Path) -> None:
    """The bench's pcap writer produces captures otids reads whole."""
    from otids.capture.readers import open_capture

    path = tmp_path / f"{name}.pcap"
    assert flood.write_pcap(path, flood.FLOODS[name](50)) == 50
    with open_capture(path) as reader:
        assert sum(1 for _ in reader) == 50
        assert reader.warning is None


def test_evicted_flows_are_released_within_one_capture_second() -> None:
    """New flows faster than the table holds, all at one timestamp: the flows evicted
    must not pile up waiting for the next housekeeping."""
    pipeline = Pipeline(RuleSet([]), _Null())
    pipeline.flows.max_flows = 256  # small table, same code path, fast test
    pipeline.run((0.0, 1, frame, len(frame)) for _, frame in flood.syn_flood(4096))
    assert len(pipeline.flows) + len(pipeline.flows._evicted) <= 2 * 256
