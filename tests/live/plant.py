"""A small plant in network namespaces, wired through a hub, with a SPAN port.

::

                       namespace <sw>: bridge br0 in hub mode (ageing_time 0:
                       every frame is flooded to every port)
        +-----------+-----------+-----------+-----------+
        |           |           |           |           |
    <master>      <plc>       <out>      <rogue>      <mon>
   10.77.0.1    10.77.0.2   10.77.0.3   10.77.0.9    span0 (no address):
   HMI, DNP3    pymodbus    opendnp3    unknown      what otids live
   master       server      outstation  client       captures

Every namespace name carries a unique suffix; :meth:`Plant.close` kills every process started
in them and deletes them, whatever happened before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Sequence

SUBNET = "10.77.0"
HOSTS = {"master": 1, "plc": 2, "out": 3, "rogue": 9}  # namespace -> last address byte
SPAN = "span0"
IP_TIMEOUT = 10.0  # seconds for one iproute2 command
KILL_TIMEOUT = 5.0  # seconds a process gets to exit after SIGTERM, then SIGKILL


def address(host: str) -> str:
    """The IPv4 address of one of :data:`HOSTS`."""
    return f"{SUBNET}.{HOSTS[host]}"


class Plant:
    """The namespaces and links above; processes started through :meth:`popen`."""

    def __init__(self) -> None:
        self.suffix = uuid.uuid4().hex[:6]
        self.created: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def ns(self, name: str) -> str:
        """The namespace's real (unique) name."""
        return f"otids-{name}-{self.suffix}"

    def ip(self, *args: str) -> None:
        """Run ``ip ARGS``; raise on failure."""
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=IP_TIMEOUT)

    def build(self) -> None:
        """Create the namespaces, the hub and its ports."""
        for name in ("sw", "mon", *HOSTS):
            self.ip("netns", "add", self.ns(name))
            self.created.append(self.ns(name))
            self.ip("-n", self.ns(name), "link", "set", "lo", "up")
        sw = self.ns("sw")
        self.ip("-n", sw, "link", "add", "br0", "type", "bridge")
        self.ip("-n", sw, "link", "set", "br0", "type", "bridge", "ageing_time", "0")
        self.ip("-n", sw, "link", "set", "br0", "up")
        ports = {**{h: "eth0" for h in HOSTS}, "mon": SPAN}
        for host, inner in ports.items():
            port = f"p-{host}"
            self.ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", inner,
                    "netns", self.ns(host))  # fmt: skip
            self.ip("-n", sw, "link", "set", port, "master", "br0")
            self.ip("-n", sw, "link", "set", port, "up")
            self.ip("-n", self.ns(host), "link", "set", inner, "up")
            if host in HOSTS:
                self.ip("-n", self.ns(host), "addr", "add", f"{address(host)}/24", "dev", inner)

    def popen(self, host: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``host``'s namespace (``ip netns exec`` execs it: same pid)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(host), *argv], **kwargs)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def run(
        self, host: str, argv: Sequence[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``host``'s namespace to the end."""
        return subprocess.run(["ip", "netns", "exec", self.ns(host), *argv], capture_output=True,
                              text=True, timeout=timeout, check=False)  # fmt: skip

    def close(self) -> None:
        """Stop every process, then delete every namespace (errors ignored: best effort)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(KILL_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(KILL_TIMEOUT)
        for name in self.created:
            # Anything still running in the namespace (a grandchild) goes too.
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                                  timeout=IP_TIMEOUT, check=False).stdout.split()  # fmt: skip
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=IP_TIMEOUT,
                           check=False)  # fmt: skip
        self.created.clear()
