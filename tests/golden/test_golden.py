"""Golden outputs: ``otids read --json --transactions`` on each sample capture in pcaps/.

tests/golden/<name>.json is the expected output on pcaps/<name>.pcap, written by
scripts/update_golden.py with run-dependent values masked. Any change in a record (a field
renamed, a transaction decoded differently, an alert added or lost) fails here with a diff;
when the change is meant, regenerate with ``.venv/bin/python scripts/update_golden.py`` and
review the diff of the golden files.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "update_golden.py"
# Lines of diff shown on a failure: enough to see what changed, not the whole file.
DIFF_LINES = 80


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("update_golden", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


golden = load_script()


def test_every_sample_has_a_golden_file_and_no_other() -> None:
    assert golden.stale_goldens() == []
    missing = [p.name for p in golden.samples() if not golden.golden_path(p).exists()]
    assert missing == [], "run scripts/update_golden.py"


@pytest.mark.parametrize("pcap", golden.samples(), ids=lambda p: p.name)
def test_output_matches_golden(pcap: Path) -> None:
    path = golden.golden_path(pcap)
    if not path.exists():
        pytest.fail(f"{path.name} is missing: run scripts/update_golden.py")
    expected = path.read_text(encoding="utf-8")
    actual = golden.render(golden.mask(golden.run(pcap)))
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(), actual.splitlines(), f"golden/{path.name}", "output", lineterm=""
        )
        shown = "\n".join(list(diff)[:DIFF_LINES])
        pytest.fail(
            f"output differs from {path.name} (scripts/update_golden.py regenerates):\n{shown}"
        )


def test_masking_keeps_flows_apart_and_hides_times() -> None:
    records = [
        {"flow_id": 7, "timestamp": "2026-01-01T00:00:00.000000+0000", "x": 1},
        {"flow_id": 9, "timestamp": "2026-01-01T00:00:01.000000+0000"},
        {"flow_id": 7, "stats": {"elapsed_s": 0.1, "packets_per_s": 5.0, "last_ts": 1.0}},
    ]
    assert golden.mask(records) == [
        {"flow_id": "<flow 1>", "timestamp": "<masked>", "x": 1},
        {"flow_id": "<flow 2>", "timestamp": "<masked>"},
        {
            "flow_id": "<flow 1>",
            "stats": {"elapsed_s": "<masked>", "packets_per_s": "<masked>", "last_ts": "<masked>"},
        },
    ]


def test_render_is_indented_json_with_flat_containers_on_one_line() -> None:
    records = [{"b": [1, 2], "a": {"x": [], "y": {"k": "é", "j": None}, "z": [{"k": 1, "a": 2}]}}]
    text = golden.render(records)
    assert text == (
        "[\n"
        " {\n"
        '  "a": {\n'
        '   "x": [],\n'
        '   "y": {"j": null, "k": "é"},\n'
        '   "z": [\n'
        '    {"a": 2, "k": 1}\n'
        "   ]\n"
        "  },\n"
        '  "b": [1, 2]\n'
        " }\n"
        "]\n"
    )
    assert json.loads(text) == records
