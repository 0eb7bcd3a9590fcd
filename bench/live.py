"""Load benchmark of ``otids live``: the highest replay rate analysed with no kernel drop.

Builds two network namespaces joined by a veth pair (``gen`` replays, ``mon`` captures on
``span0``), replays Modbus/DNP3 traffic with ``tcpreplay --pps`` for ``--seconds`` at rising
rates, and for 1 and 2 workers reports the highest rate whose final statistics show no
kernel drop and every replayed packet analysed. The capture ring is kept small
(``--ring-mb``, 8 MiB: about a second of traffic at 50k packets/s) so that a worker slower
than the rate overflows it within the run instead of hiding behind a big buffer.

The traffic is ``bench/gen_mix.py``'s mix (with DNP3) reduced to its Modbus and DNP3
packets, made on first use in ``bench/out``, looped with ``--unique-ip`` so that every loop's
flows are new to otids (not retransmissions of the previous loop's). Everything happens
inside the namespaces, which are deleted at the end, also on failure. Needs root, iproute2
and tcpreplay.

Each line also gives ``pps_per_cpu_s``: packets analysed per CPU second the workers got,
the rate one worker sustains on a core of its own. On a shared machine the zero-drop rate
falls below it by however much CPU the rest of the machine takes.

Usage: python bench/live.py [--rates 25000,50000,...] [--seconds 8] [--workers 1,2]
       [--ring-mb 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
OTIDS = REPO / ".venv" / "bin" / "otids"
MIX_PACKETS = 200_000
ICS_FILTER = "tcp port 502 or tcp port 20000"
DEFAULT_RATES = "25000,50000,75000,100000,150000,200000"
RING_MB = 8  # default --ring-mb: see the module docstring
START_TIMEOUT = 20.0  # seconds for otids to start capturing
STOP_TIMEOUT = 60.0  # seconds for otids to analyse its backlog and exit after SIGINT
REPLAY_SLACK = 30.0  # seconds tcpreplay may overrun its nominal duration
REPLAY_BURST = 20  # packets tcpreplay sends per timer tick (1 ms at 20k packets/s)
DRAIN = 1.0  # seconds between the end of the replay and the stop


def sh(*argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a command; raise with its output on failure."""
    run = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if run.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {run.stderr or run.stdout}")
    return run


def traffic() -> Path:
    """The Modbus/DNP3 capture to replay (made once)."""
    OUT.mkdir(exist_ok=True)
    mix = OUT / f"mix-{MIX_PACKETS}-seed1-dnp3.pcap"
    ics = OUT / f"ics-{MIX_PACKETS}-seed1-dnp3.pcap"
    if not mix.exists():
        sh(sys.executable, str(HERE / "gen_mix.py"), "--packets", str(MIX_PACKETS),
           "--out", str(mix), "--dnp3", timeout=300)  # fmt: skip
    if not ics.exists():
        sh("tcpdump", "-r", str(mix), "-w", str(ics), ICS_FILTER, timeout=300)
    return ics


class Link:
    """``gen`` -- veth -- ``mon`` (span0), in two fresh namespaces."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.gen, self.mon = f"otids-bgen-{suffix}", f"otids-bmon-{suffix}"

    def __enter__(self) -> Link:
        for ns in (self.gen, self.mon):
            sh("ip", "netns", "add", ns)
        try:
            sh("ip", "-n", self.gen, "link", "add", "out0", "type", "veth", "peer", "name",
               "span0", "netns", self.mon)  # fmt: skip
            sh("ip", "-n", self.gen, "link", "set", "out0", "up")
            sh("ip", "-n", self.mon, "link", "set", "span0", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        for ns in (self.gen, self.mon):
            for pid in sh("ip", "netns", "pids", ns).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)


def trial(
    link: Link, pcap: Path, workers: int, rate: int, seconds: float, ring_mb: int
) -> dict[str, int]:
    """Replay at ``rate`` packets/s; return what otids saw."""
    eve = OUT / f"live-bench-{os.getpid()}.json"
    eve.unlink(missing_ok=True)
    otids = subprocess.Popen(
        ["ip", "netns", "exec", link.mon, str(OTIDS), "live", "-i", "span0", "-q",
         "--workers", str(workers), "--ring-mb", str(ring_mb), "--json", str(eve),
         "--stats-interval", "0.5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (eve.exists() and eve.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.1)
        count = int(rate * seconds)
        # nanosleep timing and small bursts: tcpreplay's default busy-waits on a core that
        # the machine (two cores) needs for otids.
        replay = sh("ip", "netns", "exec", link.gen, "tcpreplay", "-i", "out0", "--pps",
                    str(rate), "--pps-multi", str(REPLAY_BURST), "--timer", "nano",
                    "--preload-pcap", "--unique-ip", "--limit", str(count), "--loop", "0",
                    str(pcap), timeout=seconds + REPLAY_SLACK)  # fmt: skip
        time.sleep(DRAIN)
        cpu = workers_cpu(otids.pid)
        otids.send_signal(signal.SIGINT)
        otids.wait(STOP_TIMEOUT)
    finally:
        if otids.poll() is None:
            otids.kill()
            otids.wait()
    records = [json.loads(line) for line in eve.read_text().splitlines()]
    eve.unlink()
    final = [r["stats"] for r in records if r["event_type"] == "stats"][-1]
    cap = final["capture"]
    actual = rate
    for line in replay.stdout.splitlines():  # "Rated: 1234.5 Bps, 0.01 Mbps, 49998.1 pps"
        if "pps" in line and line.strip().startswith("Rated:"):
            actual = int(float(line.split(",")[-1].split()[0]))
    return {
        "sent": count,
        "replay_pps": actual,
        "kernel_packets": cap["kernel_packets"],
        "kernel_drops": cap["kernel_drops"],
        "analysed": cap["packets"],
        # Packets a worker analyses per second of CPU it gets: the rate it would sustain
        # on a core of its own, whatever the machine's other load.
        "pps_per_cpu_s": int(cap["packets"] / cpu) if cpu else 0,
    }


def workers_cpu(parent: int) -> float:
    """CPU seconds (user + system) used so far by the worker processes of ``parent``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for pid in children:
        with contextlib.suppress(OSError):
            # Fields after the command name (which may hold spaces): utime is the 12th.
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


def main() -> None:
    """Run the ladder of rates for each worker count; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default=DEFAULT_RATES, help="packets/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=8.0, help="replay time per rate")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--ring-mb", type=int, default=RING_MB, help="capture ring, MiB")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/live.py needs root (network namespaces, packet capture)")
    pcap = traffic()
    best: dict[int, int] = {}
    with Link() as link:
        for workers in (int(w) for w in args.workers.split(",")):
            best[workers] = 0
            for rate in (int(r) for r in args.rates.split(",")):
                r = trial(link, pcap, workers, rate, args.seconds, args.ring_mb)
                clean = r["kernel_drops"] == 0 and r["analysed"] >= r["sent"]
                print(f"workers={workers} rate={rate} {r} {'ok' if clean else 'LOSS'}",
                      flush=True)  # fmt: skip
                if not clean:
                    break
                best[workers] = r["replay_pps"]
    print("\nhighest Modbus/DNP3 rate with 0 drops (packets/s, as tcpreplay measured it):")
    for workers, rate in best.items():
        print(f"  {workers} worker(s): {rate:,}")


if __name__ == "__main__":
    main()
