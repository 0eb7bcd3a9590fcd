"""Rule sources through suricata-update, in otids' own data directory.

Layout of the data directory (``--data-dir``, else ``$OTIDS_DATA_DIR``, else
``$XDG_DATA_HOME/otids/rules``, i.e. ``~/.local/share/otids/rules``)::

    update.yaml            suricata-update's configuration (written once, then the user's)
    suricata-update/       its data directory: sources/ (one YAML per source), cache/
    rules/suricata.rules   everything the sources hold, merged by suricata-update
    rules/otids.rules      the Modbus/DNP3 rules of it: what ``otids read`` should load

suricata-update is always given this directory, this configuration, a Suricata
configuration path inside it (which need not exist) and ``--no-test --no-reload``, so it
never reads or writes /etc/suricata or /var/lib/suricata. With no source added it would
download ET Open; :func:`update` refuses to run then.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from otids.rules.suricata.compiler import Compiler, Unsupported
from otids.rules.suricata.groups import site_variables
from otids.rules.suricata.parser import ParsedRule, RuleSyntaxError, parse_rule, rule_lines

SURICATA_VERSION = "8.0.0"  # the version suricata-update picks rule files for
UPDATE_TIMEOUT = 900  # seconds suricata-update may take (downloads of large rule sets)
COMMAND_TIMEOUT = 120  # seconds for its quick sub-commands (add-source)
# In a header or an option: a Modbus/DNP3 rule (ports as whole numbers: not 15020).
ICS_WORDS = re.compile(r"modbus|dnp3|(?<![0-9])(?:502|20000)(?![0-9])")
DEFAULT_CONFIG = """\
# suricata-update configuration of otids (see suricata-update's documentation).
# Rule files of a source that are not wanted at all:
ignore:
  - "*deleted.rules"
"""


class UpdateError(RuntimeError):
    """suricata-update is missing or failed; the message says why."""


@dataclass
class UpdateReport:
    """What an update produced."""

    output: Path  # the otids rules file written
    total: int = 0  # rules in the merged file
    relevant: int = 0  # of them, Modbus/DNP3 rules
    loaded: int = 0  # relevant rules otids loads
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> relevant rules skipped
    log: str = ""  # suricata-update's output


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """otids' rule data directory (see the module documentation)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("OTIDS_DATA_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "otids" / "rules"


def _program() -> str:
    """The suricata-update executable: next to this Python (a virtualenv), else on PATH."""
    here = Path(sys.executable).parent / "suricata-update"
    found = str(here) if here.is_file() else shutil.which("suricata-update")
    if found is None:
        raise UpdateError("suricata-update is not installed (pip install suricata-update)")
    return found


def _run(args: list[str], data: Path, timeout: int) -> str:
    """Run suricata-update in ``data`` with its fixed options; return its output."""
    data.mkdir(parents=True, exist_ok=True)
    config = data / "update.yaml"
    if not config.exists():
        config.write_text(DEFAULT_CONFIG, encoding="utf-8")
    command = [
        _program(),
        *args[:1],
        "--data-dir",
        str(data / "suricata-update"),
        "--config",
        str(config),
        *args[1:],
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise UpdateError(f"suricata-update did not finish within {timeout} s") from exc
    except OSError as exc:
        raise UpdateError(f"cannot run suricata-update: {exc}") from exc
    output = done.stdout + done.stderr
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-5:])
        raise UpdateError(f"suricata-update failed (exit {done.returncode}):\n{tail}")
    return output


def sources(data: Path) -> list[str]:
    """Names of the sources added so far."""
    folder = data / "suricata-update" / "update" / "sources"
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def add_source(data: Path, name: str, location: str) -> str:
    """Add a source: a URL, or a local ``.rules``/``.tar.gz`` file (works offline)."""
    if "://" not in location:
        path = Path(location).expanduser().resolve()
        if not path.is_file():
            raise UpdateError(f"{location}: no such file (a source is a URL or a local file)")
        location = path.as_uri()
    return _run(["add-source", name, location], data, COMMAND_TIMEOUT)


def update(data: Path, variables: dict[str, list[object]] | None = None) -> UpdateReport:
    """Fetch every source, merge them, keep the Modbus/DNP3 rules in ``rules/otids.rules``."""
    if not sources(data):
        raise UpdateError("no rule source: add one with 'otids rules add-source NAME URL-or-FILE'")
    out_dir = data / "rules"
    log = _run(
        [
            "update",
            "--suricata-conf",
            str(data / "suricata.yaml"),
            "--suricata-version",
            SURICATA_VERSION,
            "--output",
            str(out_dir),
            "--no-test",
            "--no-reload",
        ],
        data,
        UPDATE_TIMEOUT,
    )
    merged = out_dir / "suricata.rules"
    report = UpdateReport(out_dir / "otids.rules", log=log)
    text = merged.read_text(encoding="utf-8", errors="replace") if merged.is_file() else ""
    report.output.write_text(select(text, str(merged), report, variables), encoding="utf-8")
    return report


def relevant(parsed: ParsedRule) -> bool:
    """Is the rule about Modbus or DNP3 (by protocol, keyword, event, port or variable)?"""
    header = " ".join((parsed.protocol, parsed.src, parsed.src_ports, parsed.dst, parsed.dst_ports))
    keys = " ".join(f"{k}:{v or ''}" for k, v in parsed.options if k != "msg")
    text = f"{header} {keys}".lower()
    return ICS_WORDS.search(text) is not None


def select(
    text: str,
    source: str,
    report: UpdateReport,
    variables: dict[str, list[object]] | None = None,
) -> str:
    """The Modbus/DNP3 rules of a merged rules file, counting into ``report``."""
    compiler = Compiler(site_variables(dict(variables or {})))
    kept: list[str] = []
    for line, rule_text in rule_lines(text):
        report.total += 1
        try:
            parsed = parse_rule(rule_text, source, line)
        except RuleSyntaxError:
            continue  # not judged relevant: nothing of it can be read
        if not relevant(parsed):
            continue
        report.relevant += 1
        if parsed.action != "alert":
            report.skipped[f"action {parsed.action!r} (otids alerts only)"] += 1
            continue
        try:
            compiler.compile(parsed)
        except (Unsupported, RuleSyntaxError) as exc:
            report.skipped[str(exc)] += 1
            continue
        report.loaded += 1
        kept.append(rule_text)
    return "".join(f"{r}\n" for r in kept)
