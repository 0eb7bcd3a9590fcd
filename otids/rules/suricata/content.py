"""Payload inspection: Suricata's content, pcre, byte_test, byte_jump, isdataat on one buffer.

The keywords of a rule that follow one another on one buffer form a *program*: each step
inspects the buffer from a cursor (the end of the previous match, 0 at the start) and moves
it. A positive ``content`` that matches in several places is retried at its next occurrence
when a later relative step fails (Suricata's backtracking), up to :data:`MAX_BACKTRACK`
attempts per evaluation, so a crafted payload cannot make one rule cost more than that.

Positions follow Suricata: ``offset``/``depth`` bound an absolute match to
``[offset, offset + depth)``; ``distance``/``within`` bound a relative one to
``[cursor + distance, cursor + distance + within)``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

MAX_BACKTRACK = 256  # occurrences of a content tried per evaluation before giving up
MAX_BYTES = 10  # byte_test/byte_jump read at most this many bytes (Suricata's limit)

# A step: (buffer, cursor, continuation) -> match. The continuation carries the rest of
# the program so that a content step can try its next occurrence when the rest fails.
Cont = Callable[[bytes, int], bool]


class Budget:
    """How many more content occurrences one evaluation may try."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_BACKTRACK


@dataclass(slots=True)
class Content:
    """``content`` with its modifiers (``nocase``, ``offset``, ``depth``, ``distance``,
    ``within``, negation)."""

    pattern: bytes
    negated: bool = False
    nocase: bool = False
    offset: int | None = None
    depth: int | None = None
    distance: int | None = None
    within: int | None = None
    # Snort's ``rawbytes``/``fast_pattern`` change nothing here.

    @property
    def relative(self) -> bool:
        """True when positioned after the previous match (distance or within given)."""
        return self.distance is not None or self.within is not None

    def bounds(self, size: int, cursor: int) -> tuple[int, int]:
        """The ``[start, end)`` window the pattern must lie in."""
        if self.relative:
            start = cursor + (self.distance or 0)
            end = start + self.within if self.within is not None else size
        else:
            start = self.offset or 0
            end = start + self.depth if self.depth is not None else size
        return max(start, 0), min(end, size)


@dataclass(slots=True)
class Pcre:
    """``pcre:"/re/flags"``: ``R`` relative to the cursor, ``A`` anchored there."""

    regex: re.Pattern[bytes]
    negated: bool = False
    relative: bool = False
    anchored: bool = False


@dataclass(slots=True)
class ByteTest:
    """``byte_test:nbytes, op, value, offset[, relative][, big|little][, string, base]``."""

    nbytes: int
    op: Callable[[int, int], bool]
    value: int
    offset: int
    relative: bool = False
    little: bool = False
    base: int = 0  # 0: binary; 8, 10, 16: the bytes are text in that base
    bitmask: int | None = None
    negated: bool = False


@dataclass(slots=True)
class ByteJump:
    """``byte_jump:nbytes, offset[, relative, multiplier n, post_offset n, from_beginning,
    align, big|little, string, base]``: moves the cursor past a length field's value."""

    nbytes: int
    offset: int
    relative: bool = False
    little: bool = False
    base: int = 0
    multiplier: int = 1
    post_offset: int = 0
    from_beginning: bool = False
    align: bool = False
    bitmask: int | None = None


@dataclass(slots=True)
class IsDataAt:
    """``isdataat:[!]n[, relative]``: the buffer holds a byte at ``n`` (after the cursor)."""

    at: int
    relative: bool = False
    negated: bool = False


Step = Content | Pcre | ByteTest | ByteJump | IsDataAt

BYTE_OPS: dict[str, Callable[[int, int], bool]] = {
    "<": operator.lt,
    ">": operator.gt,
    "=": operator.eq,
    "<=": operator.le,
    ">=": operator.ge,
    "&": lambda a, b: bool(a & b),
    "^": lambda a, b: bool(a ^ b),
}
"""byte_test operators; a leading ``!`` negates any of them."""


def _read(buf: bytes, pos: int, step: ByteTest | ByteJump) -> int | None:
    """The number at ``pos`` as ``step`` reads it, None when it does not fit or parse."""
    n = step.nbytes
    if pos < 0 or pos + n > len(buf):
        return None
    raw = buf[pos : pos + n]
    if step.base:
        try:
            value = int(raw.decode("ascii").strip() or "x", step.base)
        except ValueError:
            return None
    else:
        value = int.from_bytes(raw, "little" if step.little else "big")
    if step.bitmask is not None:
        mask = step.bitmask
        value &= mask
        # Suricata shifts the masked value right by the mask's trailing zero bits.
        value >>= (mask & -mask).bit_length() - 1 if mask else 0
    return value


def _compile_step(step: Step, rest: Cont, budget_of: Callable[[], Budget]) -> Cont:
    """Bind one step to the continuation running the steps after it."""
    if isinstance(step, Content):
        pattern = step.pattern.lower() if step.nocase else step.pattern
        plen = len(pattern)
        nocase, negated, bounds = step.nocase, step.negated, step.bounds

        def content(buf: bytes, cursor: int) -> bool:
            start, end = bounds(len(buf), cursor)
            hay = buf.lower() if nocase else buf
            if negated:
                return hay.find(pattern, start, end) < 0 and rest(buf, cursor)
            budget = budget_of()
            pos = hay.find(pattern, start, end)
            while pos >= 0:  # bounded by the budget and by the buffer length
                if rest(buf, pos + plen):
                    return True
                budget.left -= 1
                if budget.left <= 0:
                    return False
                pos = hay.find(pattern, pos + 1, end)
            return False

        return content
    if isinstance(step, Pcre):
        regex, negated, relative, anchored = (
            step.regex,
            step.negated,
            step.relative,
            step.anchored,
        )

        def pcre(buf: bytes, cursor: int) -> bool:
            pos = cursor if relative else 0
            m = regex.match(buf, pos) if anchored else regex.search(buf, pos)
            if negated:
                return m is None and rest(buf, cursor)
            return m is not None and rest(buf, m.end())

        return pcre
    if isinstance(step, ByteTest):
        bt = step

        def byte_test(buf: bytes, cursor: int) -> bool:
            value = _read(buf, bt.offset + (cursor if bt.relative else 0), bt)
            if value is None:
                return False
            return bt.op(value, bt.value) != bt.negated and rest(buf, cursor)

        return byte_test
    if isinstance(step, ByteJump):
        bj = step

        def byte_jump(buf: bytes, cursor: int) -> bool:
            at = bj.offset + (cursor if bj.relative else 0)
            value = _read(buf, at, bj)
            if value is None:
                return False
            jump = value * bj.multiplier
            if bj.align:
                jump += -jump % 4
            base = 0 if bj.from_beginning else at + bj.nbytes
            target = base + jump + bj.post_offset
            return 0 <= target <= len(buf) and rest(buf, target)

        return byte_jump
    da = step

    def isdataat(buf: bytes, cursor: int) -> bool:
        at = da.at + (cursor if da.relative else 0)
        return (at < len(buf)) != da.negated and rest(buf, cursor)

    return isdataat


def _done(buf: bytes, cursor: int) -> bool:
    return True


class Program:
    """The steps of one buffer, compiled into one callable: ``program(buffer) -> bool``."""

    __slots__ = ("_budget", "_entry", "steps")

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self._budget = Budget()
        entry: Cont = _done
        for step in reversed(steps):
            entry = _compile_step(step, entry, self._current)
        self._entry = entry

    def _current(self) -> Budget:
        return self._budget

    def __call__(self, buf: bytes) -> bool:
        self._budget.left = MAX_BACKTRACK
        return self._entry(buf, 0)
