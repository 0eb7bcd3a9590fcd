"""Every input that ever made a fuzz target raise (or run over 10 ms) is replayed here.

The files live in tests/fuzz/regressions/<target>/ (``crash-<sha1>`` and ``slow-<sha1>``,
written by ``fuzz/run.py``); the bug each found is named in docs (hostile input section).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fuzz.run import SLOW_INPUT_S, best_time
from fuzz.targets import TARGETS

REGRESSIONS = Path(__file__).resolve().parent / "regressions"
CASES = sorted(p for p in REGRESSIONS.glob("*/*") if p.is_file() and p.parent.name in TARGETS)


def test_regression_folders_name_targets() -> None:
    """A misnamed folder would silently replay nothing."""
    for folder in REGRESSIONS.iterdir():
        if folder.is_dir():
            assert folder.name in TARGETS, folder


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.name}" for p in CASES])
def test_replay(path: Path) -> None:
    """The input no longer raises and runs within the time bound."""
    target = TARGETS[path.parent.name]
    data = path.read_bytes()
    start = time.perf_counter()
    target(data)
    if time.perf_counter() - start > SLOW_INPUT_S:
        assert best_time(target, data) <= SLOW_INPUT_S
