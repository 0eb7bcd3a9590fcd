"""The benchmark (``make bench``): otids against tshark on generated mixed captures.

1. Generates, into ``bench/out/`` (git-ignored), a 200k-packet and a 1M-packet mix with
   ``gen_mix.py --dnp3`` (Modbus and DNP3 connections among background traffic) when missing
   or older than the generator.
2. Byte-compiles the package (as installing a wheel does; see :func:`byte_compile`), then
   runs, each as a child process, ``otids read FILE --json /dev/null --transactions --quiet``
   on both files, and ``tshark -r FILE -Y "modbus || dnp3" -T fields -e modbus.func_code
   -e dnp3.al.func`` on the 200k one (each command once untimed, then best of ``--runs``,
   otids and tshark on the 200k file taking turns; see :func:`best`), measuring wall time,
   packets/s and the child's peak RSS (``os.wait4`` gives each child's own resource usage,
   unlike ``RUSAGE_CHILDREN`` which is a maximum over all of them).
   Linux charges the spawning process's pages to the child until it execs, so a child's
   peak reads at least this harness's own peak; the report states that floor.
3. Prints a markdown table (also written to ``bench/out/results.md``) and exits non-zero when
   otids is below ``MIN_SPEEDUP`` times tshark's packets/s on the 200k file, or when its peak
   RSS on 1M packets exceeds that on 200k by more than ``MAX_RSS_GROWTH``: memory must not
   grow with the capture.

Usage: python bench/run.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
SIZES = (200_000, 1_000_000)  # packets in the two mixes
BASELINE_SIZE = 200_000  # the file tshark is compared on
SEED = 1
TSHARK_FILTER = "modbus || dnp3"  # tshark dissects both protocols, as otids does
MIN_SPEEDUP = 5.0  # otids must read at least this many times as many packets/s as tshark
MAX_RSS_GROWTH = 0.20  # peak RSS at 1M packets may exceed that at 200k by this fraction
GENERATE_TIMEOUT = 300.0  # seconds to generate one mix (a few are needed)
CHILD_TIMEOUT = 1800.0  # seconds one child may run before it is killed
POLL_INTERVAL = 0.01  # seconds between two checks of a running child
STDERR_TAIL = 2000  # characters of a failing child's stderr shown


class BenchError(Exception):
    """The benchmark could not run (a tool missing or failing)."""


@dataclass(frozen=True)
class Measure:
    """One run of one tool on one file."""

    tool: str
    packets: int
    seconds: float
    peak_rss_kib: int

    @property
    def rate(self) -> float:
        """Packets per second."""
        return self.packets / self.seconds

    def row(self) -> str:
        """This measure as a markdown table row."""
        return (
            f"| {self.tool} | {self.packets:,} | {self.seconds:.2f} | {self.rate:,.0f} "
            f"| {self.peak_rss_kib / 1024:.1f} |"
        )


def mix_path(packets: int) -> Path:
    """Where the mix of ``packets`` packets lives."""
    return OUT / f"mix-{packets}-seed{SEED}-dnp3.pcap"


def ensure_mixes() -> None:
    """Generate the missing or stale mixes.

    In a child process: generating here would raise this process's peak RSS, which Linux
    charges to every child spawned afterwards (see the module docstring).
    """
    generator = BENCH / "gen_mix.py"
    for packets in SIZES:
        path = mix_path(packets)
        if path.exists() and path.stat().st_mtime >= generator.stat().st_mtime:
            continue
        argv = [sys.executable, str(generator), "--packets", str(packets), "--out", str(path)]
        argv += ["--seed", str(SEED), "--dnp3"]
        try:
            subprocess.run(argv, check=True, timeout=GENERATE_TIMEOUT)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            path.unlink(missing_ok=True)
            raise BenchError(f"generating {path.name} failed: {exc}") from None


def measure(tool: str, argv: list[str], packets: int) -> Measure:
    """Run ``argv`` with stdout discarded; its wall time and its own peak RSS."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors
        )
        deadline = started + CHILD_TIMEOUT
        while True:  # bounded by the deadline
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise BenchError(f"{tool} did not finish within {CHILD_TIMEOUT:.0f} s")
            time.sleep(POLL_INTERVAL)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if proc.returncode != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace")[-STDERR_TAIL:]
            raise BenchError(f"{tool} failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}")
    return Measure(tool, packets, seconds, usage.ru_maxrss)  # ru_maxrss is in KiB on Linux


def best(runs: int, commands: list[tuple[str, list[str], int]]) -> list[Measure]:
    """The fastest of ``runs`` runs of each ``(tool, argv, packets)`` command.

    Each command runs once untimed first (the one after another tool's may read the capture
    back from disk: these machines reclaim the page cache eagerly). The timed runs then take
    turns, one of each command per round, so that a burst of load from elsewhere on a shared
    machine slows every command alike instead of all the runs of one.
    """
    for tool, argv, packets in commands:
        measure(tool, argv, packets)
    rounds = [[measure(*command) for command in commands] for _ in range(runs)]
    return [min(column, key=lambda m: m.seconds) for column in zip(*rounds, strict=True)]


def otids_command() -> Path:
    """The otids console script installed next to this Python."""
    path = Path(sys.executable).parent / "otids"
    if not path.exists():
        raise BenchError(
            f"the otids command is missing ({path}): install the package first (make setup)"
        )
    return path


def byte_compile() -> None:
    """Byte-compile the package, as installing a wheel does.

    An editable install under ``PYTHONDONTWRITEBYTECODE`` (set in many CI and container
    environments) never writes ``.pyc`` files, so every run would compile all of otids from
    source first: about 0.1 s of the 200k run, which measures the environment, not otids.
    Python checks each ``.pyc`` against its source, so a stale one is never used.
    """
    package = BENCH.parent / "otids"
    done = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(package)],
        capture_output=True,
        text=True,
        timeout=GENERATE_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"byte-compiling {package} failed: {done.stdout[-STDERR_TAIL:]}")


def run(runs: int) -> tuple[list[str], bool]:
    """Measure everything; the report lines and whether the targets were met."""
    otids = otids_command()
    byte_compile()
    tshark = shutil.which("tshark")
    if tshark is None:
        raise BenchError("tshark is not installed (make setup installs it)")
    ensure_mixes()

    def otids_argv(packets: int) -> list[str]:
        argv = [str(otids), "read", str(mix_path(packets))]
        return [*argv, "--json", os.devnull, "--transactions", "--quiet"]

    tshark_argv = [tshark, "-r", str(mix_path(BASELINE_SIZE)), "-Y", TSHARK_FILTER]
    tshark_argv += ["-T", "fields", "-e", "modbus.func_code", "-e", "dnp3.al.func"]
    # The two commands whose ratio is the target take turns; the larger files after them.
    otids_base, reference = best(
        runs,
        [
            ("otids", otids_argv(BASELINE_SIZE), BASELINE_SIZE),
            ("tshark", tshark_argv, BASELINE_SIZE),
        ],
    )
    larger = [("otids", otids_argv(n), n) for n in SIZES if n != BASELINE_SIZE]
    measures = sorted([otids_base, *best(runs, larger)], key=lambda m: m.packets)

    small, large = measures[0], measures[-1]
    speedup = otids_base.rate / reference.rate
    growth = large.peak_rss_kib / small.peak_rss_kib - 1
    harness_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    speed_ok = speedup >= MIN_SPEEDUP
    memory_ok = growth <= MAX_RSS_GROWTH
    lines = [
        f"# otids benchmark ({time.strftime('%Y-%m-%d %H:%M:%S')})",
        "",
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; mixes from "
        f'`bench/gen_mix.py --seed {SEED} --dnp3`; tshark with `-Y "{TSHARK_FILTER}"`; '
        f"best of {runs} run(s).",
        "",
        "| tool | packets | seconds | packets/s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
        *(m.row() for m in [*measures, reference]),
        "",
        f"- speed ratio otids/tshark on {BASELINE_SIZE:,} packets: **{speedup:.2f}x** "
        f"(target >= {MIN_SPEEDUP:g}x): {'ok' if speed_ok else 'FAIL'}",
        f"- otids peak RSS growth {small.packets:,} -> {large.packets:,} packets: "
        f"**{growth:+.1%}** (limit +{MAX_RSS_GROWTH:.0%}): {'ok' if memory_ok else 'FAIL'}",
        f"- peak RSS is exact above {harness_rss_kib / 1024:.1f} MiB, the harness's own peak "
        "(charged to each child until it execs)",
    ]
    return lines, speed_ok and memory_ok


def main() -> None:
    """Parse the options, run, report; exit 1 when a target is missed, 2 when unable to run."""
    parser = argparse.ArgumentParser(description="Benchmark otids against tshark.")
    parser.add_argument("--runs", type=int, default=3, help="runs per measure, best kept")
    args = parser.parse_args()
    try:
        lines, ok = run(max(1, args.runs))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(2)
    report = "\n".join(lines) + "\n"
    print(report, end="")
    (OUT / "results.md").write_text(report, encoding="utf-8")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
