"""Suricata / Snort signature text -> :class:`ParsedRule` (syntax only, nothing compiled).

A signature::

    action proto  src_addr src_port  dir  dst_addr dst_port  (keyword:value; keyword; ...)
    alert  modbus any      any       ->   $MODBUS_SERVER 502 (msg:"..."; sid:1; rev:1;)

``dir`` is ``->`` or ``<>``. Snort 3 also allows no addresses at all (``alert tcp ( ... )``).
A rule may span several lines, each but the last ending with ``\\``. Lines starting with
``#`` are comments (a disabled rule included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ACTIONS = frozenset({"alert", "pass", "drop", "reject", "rejectsrc", "rejectdst", "rejectboth"})
DIRECTIONS = frozenset({"->", "<>"})
MAX_RULE_LINES = 200  # continuation lines joined into one rule: a runaway "\" stops here
_HEX = re.compile(rb"[0-9A-Fa-f]{2}")


class RuleSyntaxError(ValueError):
    """A signature that cannot be parsed at all."""


@dataclass(slots=True)
class ParsedRule:
    """One signature split into its header and its ``(keyword, value)`` options."""

    action: str
    protocol: str
    src: str
    src_ports: str
    direction: str
    dst: str
    dst_ports: str
    options: list[tuple[str, str | None]]
    source: str = ""
    line: int = 0
    text: str = ""
    sid: int | None = field(default=None)

    def first(self, keyword: str) -> str | None:
        """The value of the first option ``keyword``, None when absent or valueless."""
        for key, value in self.options:
            if key == keyword:
                return value
        return None


def rule_lines(text: str) -> list[tuple[int, str]]:
    """``(first line number, rule text)`` of every rule in a rules file."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending:
            if not line or line.startswith("#"):
                continue
            start = number
        if line.endswith("\\") and len(pending) < MAX_RULE_LINES:
            pending.append(line[:-1])
            continue
        pending.append(line)
        out.append((start, " ".join(pending)))
        pending = []
    if pending:
        out.append((start, " ".join(pending)))
    return out


def _header_tokens(header: str) -> list[str]:
    """Whitespace-separated words, keeping ``[a, b]`` groups (which may hold spaces) whole."""
    tokens: list[str] = []
    word: list[str] = []
    depth = 0
    for ch in header:  # a rule header is a few dozen characters
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(depth - 1, 0)
        if ch.isspace() and depth == 0:
            if word:
                tokens.append("".join(word))
                word = []
            continue
        if not (ch.isspace() and depth):
            word.append(ch)
    if word:
        tokens.append("".join(word))
    return tokens


def split_options(body: str) -> list[tuple[str, str | None]]:
    """``msg:"a;b"; sid:1;`` -> ``[("msg", '"a;b"'), ("sid", "1")]``.

    A ``;`` ends an option unless it is inside double quotes or escaped with ``\\``.
    """
    options: list[tuple[str, str | None]] = []
    part: list[str] = []
    quoted = escaped = False
    for ch in body:  # bounded by the rule's length
        if escaped:
            part.append(ch)
            escaped = False
            continue
        if ch == "\\":
            part.append(ch)
            escaped = True
            continue
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            _add_option(options, "".join(part))
            part = []
            continue
        part.append(ch)
    if quoted:
        raise RuleSyntaxError("unterminated quoted string in the options")
    _add_option(options, "".join(part))
    return options


def _add_option(options: list[tuple[str, str | None]], text: str) -> None:
    text = text.strip()
    if not text:
        return
    key, sep, value = text.partition(":")
    options.append((key.strip().lower(), value.strip() if sep else None))


def parse_rule(text: str, source: str = "", line: int = 0) -> ParsedRule:
    """Parse one signature; raise :class:`RuleSyntaxError` when it has no valid shape."""
    open_at = text.find("(")
    close_at = text.rfind(")")
    if open_at < 0 or close_at < open_at:
        raise RuleSyntaxError("no option list in parentheses")
    if text[close_at + 1 :].strip():
        raise RuleSyntaxError("text after the closing parenthesis")
    head = _header_tokens(text[:open_at])
    if len(head) == 2:  # Snort 3: no addresses, ports or direction
        head = [head[0], head[1], "any", "any", "->", "any", "any"]
    if len(head) != 7:
        raise RuleSyntaxError(
            f"the header needs action, protocol, source, port, direction, destination, port; "
            f"got {' '.join(head)!r}"
        )
    action, protocol, src, sport, direction, dst, dport = head
    if action.lower() not in ACTIONS:
        raise RuleSyntaxError(f"unknown action {action!r}")
    if direction not in DIRECTIONS:
        raise RuleSyntaxError(f"direction must be -> or <>, got {direction!r}")
    options = split_options(text[open_at + 1 : close_at])
    rule = ParsedRule(
        action.lower(),
        protocol.lower(),
        src,
        sport,
        direction,
        dst,
        dport,
        options,
        source,
        line,
        text,
    )
    sid = rule.first("sid")
    if sid is not None:
        try:
            rule.sid = int(sid.strip().strip('"'))
        except ValueError as exc:
            raise RuleSyntaxError(f"sid must be a number, got {sid!r}") from exc
    return rule


def unquote(value: str) -> str:
    """``"text"`` -> ``text`` with ``\\"``, ``\\;``, ``\\\\`` unescaped; bare text as is."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return re.sub(r"\\(.)", r"\1", value)


def content_bytes(text: str) -> bytes:
    """A content string (without its quotes) to bytes: ``|0d 0a|`` segments are hex."""
    out = bytearray()
    parts = text.split("|")
    if len(parts) % 2 == 0:
        raise RuleSyntaxError(f"unbalanced | in content {text!r}")
    for i, part in enumerate(parts):
        if i % 2:
            digits = part.replace(" ", "").encode()
            if len(digits) % 2 or len(_HEX.findall(digits)) * 2 != len(digits):
                raise RuleSyntaxError(f"bad hex bytes |{part}| in content")
            out += bytes.fromhex(digits.decode())
        else:
            out += part.encode("latin-1", "replace")
    return bytes(out)


def split_quoted(value: str) -> tuple[bool, str, str]:
    """``!"abc", nocase`` -> ``(True, "abc", "nocase")``: negation, the quoted text
    (escapes resolved), and what follows the closing quote (Snort 3 modifiers)."""
    value = value.strip()
    negated = value.startswith("!")
    if negated:
        value = value[1:].lstrip()
    if not value.startswith('"'):
        return negated, value, ""
    end = 1
    while end < len(value):  # bounded by the value's length
        if value[end] == "\\":
            end += 2
            continue
        if value[end] == '"':
            break
        end += 1
    if end >= len(value):
        raise RuleSyntaxError(f"unterminated string {value!r}")
    inner = re.sub(r"\\([\\\";:])", r"\1", value[1:end])
    return negated, inner, value[end + 1 :].strip().lstrip(",").strip()
