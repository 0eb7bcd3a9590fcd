"""Run the fuzz targets for a bounded time and report inputs/s, slow inputs and crashes.

Usage (``make fuzz`` runs every target, ``FUZZ_SECONDS`` each)::

    .venv/bin/python -m fuzz.run [--seconds 60] [--engine auto|atheris|mutate] [TARGET ...]

Engines: ``atheris`` (coverage-guided libFuzzer, when the ``atheris`` package is installed;
one child process per target, since libFuzzer runs once per process; its "max" time is
measured under instrumentation, so slow candidates are timed again without it before being
counted) and ``mutate`` (a
built-in mutational fuzzer over the seeds: no dependency, no instrumentation, so several
times more inputs per second). ``auto`` picks atheris when it imports.

Every input that raises is written to ``tests/fuzz/regressions/<target>/crash-<sha1>``,
which ``tests/fuzz/test_regressions.py`` replays forever after. Inputs over
:data:`SLOW_INPUT_S` (timed again without instrumentation, best of three) go there as
``slow-<sha1>``. Exit status: 0 when no input raised or was slow, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REGRESSIONS = REPO / "tests" / "fuzz" / "regressions"
SLOW_INPUT_S = 0.010  # the bound: no input may take longer than 10 ms
MAX_INPUT = 4096  # larger inputs only repeat what smaller ones reach, slower
MAX_KEPT = 20  # crashing or slow inputs saved per run: the first ones tell the story
STATS_EVERY = 4096  # inputs between two stats file updates (atheris engine)
# Values that sit on boundaries of length and count fields.
INTERESTING = (0x00, 0x01, 0x02, 0x05, 0x64, 0x7F, 0x80, 0xC0, 0xFE, 0xFF)


class Stats:
    """What one target's run did."""

    def __init__(self, target: str, engine: str) -> None:
        self.target = target
        self.engine = engine
        self.inputs = 0
        self.crashes = 0
        self.slow = 0
        self.max_s = 0.0
        self.elapsed = 0.0
        self.kept: list[str] = []
        self.errors: list[str] = []

    def as_dict(self) -> dict[str, object]:
        """JSON form, exchanged between the atheris child and the parent."""
        return {k: v for k, v in vars(self).items()}

    def line(self) -> str:
        """One report line."""
        rate = self.inputs / self.elapsed if self.elapsed else 0.0
        return (
            f"{self.target:8} {self.engine:8} {self.inputs:>10,} inputs {self.elapsed:7.1f} s "
            f"{rate:>9,.0f}/s  max {self.max_s * 1000:6.2f} ms  "
            f"crashes {self.crashes}  slow {self.slow}"
        )


def keep(target: str, kind: str, data: bytes) -> str:
    """Save an input as a regression file; return its path relative to the repo."""
    folder = REGRESSIONS / target
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}-{hashlib.sha1(data).hexdigest()[:16]}"
    path.write_bytes(data)
    return str(path.relative_to(REPO))


def best_time(func: Callable[[bytes], None], data: bytes) -> float:
    """Best of three timings of ``func(data)``: a GC pause or a busy CPU is not the input's
    fault."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        with contextlib.suppress(Exception):  # already reported as a crash
            func(data)
        best = min(best, time.perf_counter() - start)
    return best


def run_one(stats: Stats, func: Callable[[bytes], None], data: bytes, retime: bool = True) -> None:
    """Feed one input, timing it and keeping it when it raises or is slow."""
    start = time.perf_counter()
    try:
        func(data)
    except Exception:  # every exception is a finding
        stats.crashes += 1
        if len(stats.kept) < MAX_KEPT:
            stats.kept.append(keep(stats.target, "crash", data))
            stats.errors.append(traceback.format_exc(limit=-3).strip().splitlines()[-1])
    took = time.perf_counter() - start
    stats.inputs += 1
    if took > SLOW_INPUT_S:
        if retime:
            took = best_time(func, data)
        if took > SLOW_INPUT_S:
            stats.slow += 1
            if len(stats.kept) < MAX_KEPT:
                stats.kept.append(keep(stats.target, "slow", data))
    if took > stats.max_s:
        stats.max_s = took


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One to four random edits of ``data``: flips, boundary values, inserts, deletes,
    duplicated ranges, splices with another seed, truncation."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        n = len(buf)
        kind = rng.randrange(8)
        pos = rng.randrange(n + 1)
        if kind == 0 and n:
            buf[pos % n] ^= 1 << rng.randrange(8)
        elif kind == 1 and n:
            buf[pos % n] = rng.choice(INTERESTING)
        elif kind == 2 and n:
            buf[pos % n] = rng.randrange(256)
        elif kind == 3:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif kind == 4 and n:
            del buf[pos : pos + rng.randint(1, 16)]
        elif kind == 5 and n:
            start = rng.randrange(n)
            buf[pos:pos] = buf[start : start + rng.randint(1, 64)]
        elif kind == 6:
            other = rng.choice(pool)
            start = rng.randrange(len(other) + 1)
            buf[pos:] = other[start : start + rng.randint(1, 512)]
        elif n:
            del buf[pos:]
    return bytes(buf[:MAX_INPUT])


def run_mutate(target: str, seconds: float, seed: int = 0) -> Stats:
    """The built-in engine: mutate seeds (and earlier mutants) for ``seconds``."""
    from fuzz.seeds import seeds
    from fuzz.targets import TARGETS

    func = TARGETS[target]
    pool = seeds(target) or [b""]
    rng = random.Random(seed)
    stats = Stats(target, "mutate")
    started = time.perf_counter()
    deadline = started + seconds
    for data in pool:
        run_one(stats, func, data)
    while time.perf_counter() < deadline:  # bounded by the deadline
        for _ in range(256):
            data = mutate(rng, rng.choice(pool), pool)
            run_one(stats, func, data)
            # A mutant that still parses as framed input becomes a parent now and then:
            # mutations compound, reaching states a single edit cannot.
            if not rng.randrange(512) and len(pool) < 4096:
                pool.append(data)
    stats.elapsed = time.perf_counter() - started
    return stats


def atheris_child(target: str, seconds: float, stats_path: str, corpus: str) -> None:
    """Inside the child process: instrument otids, then fuzz ``target`` until the deadline."""
    import atheris

    with atheris.instrument_imports(include=["otids"]):
        from fuzz.targets import TARGETS
    func = TARGETS[target]
    stats = Stats(target, "atheris")
    started = time.perf_counter()
    deadline = started + seconds

    def write_stats() -> None:
        stats.elapsed = time.perf_counter() - started
        Path(stats_path).write_text(json.dumps(stats.as_dict()))

    def one_input(data: bytes) -> None:
        # Timing under instrumentation overstates; slow candidates are timed again
        # uninstrumented by the parent, so here they are only collected.
        run_one(stats, func, data[:MAX_INPUT], retime=False)
        if stats.inputs % STATS_EVERY == 0:
            write_stats()
            if time.perf_counter() > deadline:
                os._exit(0)  # libFuzzer has no clean stop; the stats are written

    write_stats()
    args = [sys.argv[0], corpus, f"-max_total_time={int(seconds) + 5}", "-timeout=5"]
    args += [f"-max_len={MAX_INPUT}", "-print_final_stats=0"]
    atheris.Setup(args, one_input)
    atheris.Fuzz()


def run_atheris(target: str, seconds: float) -> Stats:
    """Run one target under atheris in a child process; return its stats."""
    from fuzz.seeds import seeds
    from fuzz.targets import TARGETS

    with tempfile.TemporaryDirectory(prefix="otids-fuzz-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for i, data in enumerate(seeds(target)):
            (corpus / f"seed-{i}").write_bytes(data)
        stats_path = Path(tmp) / "stats.json"
        cmd = [sys.executable, "-m", "fuzz.run", "--child", target, "--seconds", str(seconds)]
        cmd += ["--stats", str(stats_path), "--corpus", str(corpus)]
        # A hung child is abandoned: its stats so far are still in the file.
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                cmd,
                cwd=REPO,
                timeout=seconds + 60,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
        stats = Stats(target, "atheris")
        if stats_path.exists():
            vars(stats).update(json.loads(stats_path.read_text()))
    # Slow candidates: time them again without instrumentation.
    func = TARGETS[target]
    slow_files = [k for k in stats.kept if Path(k).name.startswith("slow-")]
    stats.kept = [k for k in stats.kept if k not in slow_files]
    stats.slow = 0
    for name in slow_files:
        path = REPO / name
        if best_time(func, path.read_bytes()) > SLOW_INPUT_S:
            stats.slow += 1
            stats.kept.append(name)
        else:
            path.unlink()
    return stats


TARGET_NAMES = ("modbus", "dnp3", "tcp", "link", "readers")  # fuzz.targets.TARGETS' keys


def main() -> None:
    """Command line entry point (see the module doc)."""
    # fuzz.targets (and so otids) is not imported here: the atheris child must import it
    # under instrumentation.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"default: all of {', '.join(TARGET_NAMES)}")
    parser.add_argument("--seconds", type=float, default=60.0, help="per target")
    parser.add_argument("--engine", choices=("auto", "atheris", "mutate"), default="auto")
    parser.add_argument("--seed", type=int, default=0, help="mutate engine's random seed")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--stats", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        atheris_child(args.child, args.seconds, args.stats, args.corpus)
        return
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401
        except ImportError:
            engine = "mutate"
        else:
            engine = "atheris"
    bad = False
    for target in args.targets or TARGET_NAMES:
        if target not in TARGET_NAMES:
            parser.error(f"unknown target {target!r}")
        if engine == "atheris":
            stats = run_atheris(target, args.seconds)
        else:
            stats = run_mutate(target, args.seconds, args.seed)
        print(stats.line(), flush=True)
        for name, error in zip(stats.kept, [*stats.errors, *[""] * len(stats.kept)], strict=False):
            print(f"    kept {name} {error}", flush=True)
        bad = bad or bool(stats.crashes or stats.slow)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
