"""A short fuzzing pass over every target (``make fuzz`` runs the long one).

Two engines: hypothesis generating raw bytes (and structured chunks), and the built-in
mutational fuzzer of ``fuzz/run.py`` over seeds cut from pcaps/, for a fraction of a second
per target. Any exception or any input over 10 ms fails the test; the input is kept under
tests/fuzz/regressions/ by the runner (commit it with the fix).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import run
from fuzz.seeds import seeds
from fuzz.targets import REST, TARGETS, chunks, encode

# Seconds of mutational fuzzing per target in the normal test run: a smoke test; the
# long runs are `make fuzz`.
SHORT_PASS_S = 0.4


@pytest.mark.parametrize("target", sorted(TARGETS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=1200))
def test_random_bytes(target: str, data: bytes) -> None:
    """Raw random bytes: never an exception."""
    TARGETS[target](data)


framed = st.lists(st.tuples(st.integers(0, 1), st.binary(max_size=300)), max_size=8)


@pytest.mark.parametrize("target", ["modbus", "dnp3", "link"])
@settings(max_examples=100, deadline=None)
@given(control=st.integers(0, 255), pieces=framed)
def test_framed_chunks(target: str, control: int, pieces: list[tuple[int, bytes]]) -> None:
    """Well-framed chunks (several feeds, both directions): never an exception."""
    TARGETS[target](bytes([control]) + encode(pieces))


@given(pieces=framed)
def test_chunk_framing_round_trips(pieces: list[tuple[int, bytes]]) -> None:
    """:func:`encode` and :func:`chunks` agree, so seeds mean what they say."""
    data = encode(pieces)
    joined: dict[int, bytes] = {0: b"", 1: b""}
    for direction, chunk in chunks(data):
        assert len(chunk) < REST
        joined[direction] += chunk
    for direction in (0, 1):
        assert joined[direction] == b"".join(c for d, c in pieces if d == direction)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_seeds_exist_and_pass(target: str) -> None:
    """Every target has seeds (cut from pcaps/) and none of them fails."""
    found = seeds(target)
    assert found
    for data in found:
        TARGETS[target](data)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_short_mutation_pass(target: str) -> None:
    """A fraction of a second of the built-in mutational fuzzer: no crash, no slow input."""
    stats = run.run_mutate(target, SHORT_PASS_S, seed=len(target))
    assert stats.inputs > 100
    assert stats.crashes == 0, f"kept {stats.kept}: {stats.errors}"
    assert stats.slow == 0, f"inputs over {run.SLOW_INPUT_S * 1000:.0f} ms: {stats.kept}"
