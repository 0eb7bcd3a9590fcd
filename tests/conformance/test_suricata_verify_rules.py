"""suricata-verify's Modbus and DNP3 alert checks, run with otids' Suricata rule support
(the same runner as ``make conformance``, scripts/conformance.py): every applicable check
passes; only the Lua test is unsupported."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
VERIFY = REPO.parent / "shared" / "corpus" / "suricata-verify"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not VERIFY.is_dir(), reason="../shared/corpus is absent"),
]


def load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "otids_conformance", REPO / "scripts" / "conformance.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runner() -> ModuleType:
    return load_runner()


def test_every_alert_check_passes(runner: ModuleType) -> None:
    rows = [row for d in runner.verify_dirs(VERIFY) for row in runner.check_test(d)]
    failed = [(r.test, r.sid, r.expected, r.got) for r in rows if r.status == "FAIL"]
    assert failed == []
    assert sum(r.status == "pass" for r in rows) == 25
    assert {r.test: r.note for r in rows if r.status == "unsupported"} == {
        "dnp3-lua": "needs Lua rule scripts"
    }
    # dnp3.ind in Suricata 9 syntax: not applicable to the Suricata 8 otids answers as ...
    assert [r.status for r in rows if r.test == "dnp3-ind-keyword"] == ["skipped"]


def test_suricata_9_dnp3_ind(runner: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """... but its rules load and give the counts test.yaml expects."""
    monkeypatch.setattr(runner, "VERSION", (9, 0, 0))
    rows = runner.check_test(VERIFY / "dnp3-ind-keyword")
    assert [(r.sid, r.expected, r.got) for r in rows] == [
        (1, 2, 2),
        (2, 2, 2),
        (3, 2, 2),
        (4, 2, 2),
        (5, 0, 0),
    ]


@pytest.mark.parametrize(
    ("requires", "applies"),
    [
        (None, True),
        ({"min-version": "7.0.14"}, True),
        ({"min-version": 8}, True),
        ({"min-version": 9}, False),
        ({"lt-version": "8"}, False),
        ({"lt-version": "8.0.1"}, True),
    ],
)
def test_version_conditions(
    runner: ModuleType, requires: dict[str, object] | None, applies: bool
) -> None:
    assert runner.applicable(requires) is applies
