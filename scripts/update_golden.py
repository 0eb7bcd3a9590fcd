#!/usr/bin/env python3
"""Regenerate the golden JSON outputs: tests/golden/<name>.json for every pcaps/<name>.pcap.

Each golden file is what ``otids read pcaps/<name>.pcap --json OUT --transactions --quiet``
writes, one record per list element, with the values that vary between runs masked
(:data:`MASKED`; flow ids numbered), pretty-printed with sorted keys (see :func:`render`) so
that a diff shows what changed. tests/golden/test_golden.py compares a fresh run with these
files; after a deliberate change of the output, run this script and review the diff:

    .venv/bin/python scripts/update_golden.py          # rewrite the files that differ
    .venv/bin/python scripts/update_golden.py --check  # exit 1 if any differs, write nothing
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PCAPS = REPO / "pcaps"
GOLDEN = REPO / "tests" / "golden"

# Keys whose values say when or how fast, not what: wall-clock timings and packet times (the
# real-stack samples are re-captured now and then). Flow ids, hashes that include the first
# packet time, are numbered instead (see mask()).
MASKED = frozenset({"timestamp", "last_ts", "elapsed_s", "packets_per_s"})
MASK = "<masked>"
# One sample never takes more than a second or two; this only stops a hung run.
TIMEOUT_S = 120


def otids_command() -> list[str]:
    """The console script installed next to this interpreter."""
    return [str(Path(sys.executable).parent / "otids")]


def run(pcap: Path) -> list[dict[str, Any]]:
    """The JSON records of ``otids read`` on ``pcap``, as written."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eve.json"
        subprocess.run(
            [*otids_command(), "read", str(pcap.relative_to(REPO)), "--json", str(out),
             "--transactions", "--quiet"],
            cwd=REPO,
            check=True,
            capture_output=True,
            timeout=TIMEOUT_S,
        )  # fmt: skip
        return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def mask(records: list[dict[str, Any]]) -> list[Any]:
    """Records with :data:`MASKED` values replaced and flow ids numbered by first use.

    A flow id becomes ``<flow 1>``, ``<flow 2>``...: which records share a flow is kept,
    the hash itself (of addresses, ports and first-packet time) is not.
    """
    flows: dict[Any, str] = {}

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key in MASKED:
                    out[key] = MASK
                elif key == "flow_id":
                    out[key] = flows.setdefault(item, f"<flow {len(flows) + 1}>")
                else:
                    out[key] = walk(item)
            return out
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    return [walk(record) for record in records]


def render(records: list[Any]) -> str:
    """The golden file's text: indent 1 and sorted keys, except that a list or object
    holding no list or object (register values, one DNP3 point) stays on one line, so
    that a record reads top to bottom and a changed value shows as one changed line."""
    lines: list[str] = []
    _render(records, 0, "", lines)
    return "\n".join(lines) + "\n"


def _render(value: Any, depth: int, prefix: str, lines: list[str]) -> None:
    """Append ``value``'s lines, the first one starting with ``prefix`` (a key)."""
    pad = " " * depth
    if not isinstance(value, (list, dict)):
        lines.append(pad + prefix + json.dumps(value, ensure_ascii=False))
        return
    members = value.values() if isinstance(value, dict) else value
    if not any(isinstance(v, (list, dict)) for v in members):
        lines.append(pad + prefix + json.dumps(value, ensure_ascii=False, sort_keys=True))
        return
    opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
    lines.append(pad + prefix + opening)
    items = sorted(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
    for n, (key, item) in enumerate(items):
        _render(item, depth + 1, "" if key is None else json.dumps(key) + ": ", lines)
        if n < len(items) - 1:
            lines[-1] += ","
    lines.append(pad + closing)


def golden_path(pcap: Path) -> Path:
    return GOLDEN / f"{pcap.stem}.json"


def samples() -> list[Path]:
    return sorted(PCAPS.glob("*.pcap"))


def stale_goldens() -> list[Path]:
    """Golden files whose capture is gone."""
    wanted = {golden_path(pcap) for pcap in samples()}
    return sorted(path for path in GOLDEN.glob("*.json") if path not in wanted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    args = parser.parse_args(argv)
    differ = 0
    for pcap in samples():
        text = render(mask(run(pcap)))
        target = golden_path(pcap)
        old = target.read_text(encoding="utf-8") if target.exists() else None
        if old == text:
            continue
        differ += 1
        if args.check:
            print(f"{target.relative_to(REPO)} differs from the output on {pcap.name}")
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(REPO)}")
    for stale in stale_goldens():
        differ += 1
        if args.check:
            print(f"{stale.relative_to(REPO)} has no capture in pcaps/")
        else:
            stale.unlink()
            print(f"removed {stale.relative_to(REPO)}")
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
