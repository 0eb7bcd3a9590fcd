"""The configuration file (TOML): capture interfaces, rules, site variables and outputs.

Every key stands for a command-line option of ``otids read``/``otids live``; the CLI loads
the file into click's ``default_map`` (:mod:`otids.cli.config`), so a flag given on the
command line overrides its key. This module knows nothing of click: it parses, checks and
returns ``{parameter name: value}`` plus the inline site variables.

Example (``otids.toml.example`` at the top of the repository has every key)::

    [capture]
    interfaces = ["eth1"]

    [rules]
    paths = ["site-rules"]

    [variables]
    modbus_clients = ["10.0.0.5"]

    [outputs.syslog]
    targets = ["tls://siem.example:6514"]
    ca_file = "/etc/otids/siem-ca.pem"

Relative paths are taken from the configuration file's directory, so a file works the
same from any working directory. Problems are reported all at once, each as
``FILE:LINE: message`` when the line can be found; an unknown key is named with the
closest known one.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otids.alerts.formats import RENDERERS
from otids.alerts.syslog import FACILITIES, HEADERS, parse_target

Check = Callable[[Any], str | None]  # returns what is wrong with a value, or None


def _one_of(choices: list[str] | tuple[str, ...]) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be at least {low:g}"


def _targets(urls: list[str]) -> str | None:
    for url in urls:
        try:
            parse_target(url)
        except ValueError as exc:
            return str(exc)
    return None


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: the option it sets and what its value must be."""

    param: str  # click parameter name
    kind: str  # "str", "bool", "int", "number", "list" (of strings)
    doc: str
    path: bool = False  # a file or directory: relative to the configuration file
    must_exist: bool = False
    negate: bool = False  # a bool key that sets a "--no-..." flag
    check: Check | None = None


SCHEMA: dict[str, dict[str, Key]] = {
    "capture": {
        "interfaces": Key("interfaces", "list", "interfaces to capture on (otids live)"),
        "bpf": Key("bpf", "str", "capture filter, BPF syntax (otids live)"),
        "snaplen": Key("snaplen", "int", "bytes kept per packet (otids live)", check=_at_least(64)),
        "workers": Key("workers", "int", "analysing processes (0: automatic)", check=_at_least(0)),
        "ring_mb": Key("ring_mb", "int", "capture ring per interface and worker, MiB (live)"),
        "promiscuous": Key("no_promisc", "bool", "promiscuous mode (live)", negate=True),
        "user": Key("user", "str", "user to become once capturing (live)"),
    },
    "rules": {
        "paths": Key("rule_dirs", "list", "rule files or directories", path=True, must_exist=True),
        "suricata_rules": Key(
            "suricata_rules",
            "list",
            "Suricata/Snort .rules files",
            path=True,
            must_exist=True,
        ),
        "default_rules": Key("no_default_rules", "bool", "load the embedded rule set", negate=True),
        "vars_file": Key(
            "vars_file", "str", "site variables file (YAML)", path=True, must_exist=True
        ),
    },
    "outputs": {
        "json": Key("json_out", "str", "EVE JSON lines file ('-': stdout)", path=True),
        "transactions": Key("transactions", "bool", "log every transaction to the JSON file"),
        "quiet": Key("quiet", "bool", "no alert lines or summary on the console"),
        "stats_interval": Key(
            "stats_interval", "number", "seconds between statistics (live)", check=_at_least(0)
        ),
        "pcap_out": Key("pcap_out", "str", "pcap of alerting flows (live)", path=True),
    },
    "outputs.syslog": {
        "targets": Key(
            "syslog", "list", "receivers: udp://, tcp://, tls://HOST[:PORT]", check=_targets
        ),
        "format": Key("syslog_format", "str", "payload", check=_one_of(list(RENDERERS))),
        "header": Key("syslog_header", "str", "rfc5424 or rfc3164", check=_one_of(HEADERS)),
        "facility": Key("syslog_facility", "str", "facility name", check=_one_of(list(FACILITIES))),
        "app_name": Key("syslog_app_name", "str", "APP-NAME / TAG"),
        "hostname": Key("syslog_hostname", "str", "HOSTNAME"),
        "ca_file": Key("syslog_ca", "str", "TLS CA bundle (PEM)", path=True, must_exist=True),
        "cert_file": Key(
            "syslog_cert", "str", "TLS client certificate", path=True, must_exist=True
        ),
        "key_file": Key("syslog_key", "str", "TLS client key", path=True, must_exist=True),
        "queue_size": Key("syslog_queue", "int", "alerts queued per receiver", check=_at_least(1)),
        "spool_dir": Key("syslog_spool", "str", "directory for unsent alerts at exit", path=True),
        "drain_timeout": Key(
            "syslog_drain_timeout", "number", "seconds to deliver at exit", check=_at_least(0)
        ),
        "reconnect_max": Key(
            "syslog_reconnect_max", "number", "longest reconnect wait", check=_at_least(0.1)
        ),
    },
}
VARIABLES_SECTION = "variables"  # free-form: site variable name -> list of values
SECTIONS = (*SCHEMA, VARIABLES_SECTION)

_KIND_OK: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "list": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}
_KIND_NAME = {
    "str": "a string",
    "bool": "true or false",
    "int": "an integer",
    "number": "a number",
    "list": "a list of strings",
}


class ConfigError(ValueError):
    """The file cannot be used; ``problems`` lists every reason, ``FILE:LINE: ...``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(slots=True)
class Config:
    """A checked configuration: option defaults by click parameter name, site variables."""

    path: str
    default_map: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, list[Any]] = field(default_factory=dict)


def load_config(path: str | Path) -> Config:
    """Read and check the TOML file at ``path``; ConfigError lists every problem."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{name}: not UTF-8 text ({exc.reason})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_toml_error(name, exc, text)]) from None
    return _Checker(name, text, Path(path).resolve().parent).run(data)


def _toml_error(name: str, exc: tomllib.TOMLDecodeError, text: str) -> str:
    """``FILE:LINE: not valid TOML: reason`` from tomllib's ``reason (at line L, column C)``
    or ``reason (at end of document)``."""
    message = str(exc)
    where = re.search(r"\(at (?:line (\d+), column \d+|end of document)\)$", message)
    if where:
        reason = message[: where.start()].strip()
        line = where.group(1) or max(1, len(text.splitlines()))
        return f"{name}:{line}: not valid TOML: {reason}"
    return f"{name}: not valid TOML: {message}"


def _suggest(word: str, known: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(known)})"


class _Checker:
    """Walks the parsed document once, collecting problems and the option defaults."""

    def __init__(self, name: str, text: str, base: Path) -> None:
        self.name = name
        self.lines = text.splitlines()
        self.base = base
        self.problems: list[str] = []
        self.config = Config(name)

    def run(self, data: dict[str, Any]) -> Config:
        for section, value in data.items():
            if section == "outputs" and isinstance(value, dict):
                syslog = value.get("syslog")
                self._section("outputs", {k: v for k, v in value.items() if k != "syslog"})
                if syslog is not None:
                    self._section("outputs.syslog", syslog)
            elif section in SCHEMA:
                self._section(section, value)
            elif section == VARIABLES_SECTION:
                self._variables(value)
            else:
                self._problem(
                    section, None, f"unknown section [{section}]" + _suggest(section, SECTIONS)
                )
        if self.problems:
            raise ConfigError(self.problems)
        return self.config

    def _problem(self, section: str, key: str | None, message: str) -> None:
        line = self._line_of(section, key)
        where = f"{self.name}:{line}" if line else self.name
        self.problems.append(f"{where}: {message}")

    def _line_of(self, section: str, key: str | None) -> int | None:
        """The line of ``[section]``'s ``key`` (or of the header when ``key`` is None)."""
        header = re.compile(r"^\s*\[\s*" + re.escape(section) + r"\s*\]")
        any_header = re.compile(r"^\s*\[")
        wanted = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=") if key else None
        inside = False
        for number, line in enumerate(self.lines, 1):
            if header.match(line):
                if wanted is None:
                    return number
                inside = True
            elif any_header.match(line):
                inside = False
            elif inside and wanted is not None and wanted.match(line):
                return number
        # A dotted key, an inline table, or a value where a table belongs: the first mention.
        loose = re.compile(r"(^|[.{,\s])[\"']?" + re.escape(key or section) + r"[\"']?\s*=")
        for number, line in enumerate(self.lines, 1):
            if loose.search(line):
                return number
        return None

    def _section(self, section: str, value: Any) -> None:
        if not isinstance(value, dict):
            self._problem(section, None, f"[{section}] must be a table")
            return
        keys = SCHEMA[section]
        for key, item in value.items():
            spec = keys.get(key)
            if spec is None:
                self._problem(
                    section, key, f"unknown key {key!r} in [{section}]" + _suggest(key, list(keys))
                )
                continue
            self._key(section, key, spec, item)

    def _key(self, section: str, key: str, spec: Key, value: Any) -> None:
        if not _KIND_OK[spec.kind](value):
            self._problem(
                section, key, f"{section}.{key} must be {_KIND_NAME[spec.kind]}, got {value!r}"
            )
            return
        if spec.check is not None:
            error = spec.check(value)
            if error:
                self._problem(section, key, f"{section}.{key}: {error}")
                return
        if spec.path:
            value = [self._path(v) for v in value] if spec.kind == "list" else self._path(value)
            if spec.must_exist:
                for item in value if isinstance(value, list) else [value]:
                    if not Path(item).exists():
                        self._problem(section, key, f"{section}.{key}: {item} does not exist")
                        return
        if spec.negate:
            value = not value
        self.config.default_map[spec.param] = value

    def _path(self, value: str) -> str:
        if value == "-":  # stdout, for outputs.json
            return value
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else self.base / path)

    def _variables(self, value: Any) -> None:
        if not isinstance(value, dict):
            self._problem(VARIABLES_SECTION, None, f"[{VARIABLES_SECTION}] must be a table")
            return
        for name, values in value.items():
            if isinstance(values, dict):
                self._problem(
                    VARIABLES_SECTION, name, f"variable {name!r} must be a list of values"
                )
                continue
            self.config.variables[name.lstrip("$")] = (
                values if isinstance(values, list) else [values]
            )
