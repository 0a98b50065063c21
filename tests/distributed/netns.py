"""Hosts of their own on one machine: an MPI job across a real network stack.

A ``Cluster`` of N hosts is N Linux network namespaces, each with one virtual Ethernet link
(``eth0``, address ``10.23.0.<i + 1>/24``) to a bridge in a switch namespace of its own, the way
N machines hang off one Ethernet switch. Nothing else is reachable from them: the namespaces
have no route out, so a job contacts only these addresses. ``mpiexec`` (the ``mpich`` wheel's
Hydra) starts in host 0's namespace and reaches the others through a launcher that stands in
for ssh: Hydra calls ``WRAPPER [-x] HOST COMMAND`` and the wrapper runs COMMAND (Hydra's proxy)
with ``ip netns exec`` in HOST's namespace. One rank per host; the environment forces TCP
(``TCP_ONLY``): no shared memory between ranks, so every byte crosses the links, whose
counters ``tx_bytes`` reads.

``private`` gives every host but host 0 a disk of its own at that path: host i > 0 sees
``disk(i)`` there (a folder of the cluster's, empty at first, bind-mounted in the proxy's own
mount namespace), host 0 the folder itself. Files rank 0 writes there are on rank 0's host
only, as on machines without a shared file system, and what another rank writes stays on its
host's disk, where a test can look.

``shape(rate)`` puts a token bucket (``tc qdisc ... tbf``) on both ends of every link, so each
host sends and receives at most ``rate`` (a 1 or 10 Gbit/s NIC). ``netem`` (added delay) is
missing from some kernels, so latency is not shaped here: measure the round trip instead.

Names carry this process's id and a counter (``nfnet-<pid>-<k>-h<i>``, ``...-sw``), so runs in
parallel never collide; the namespaces are removed on ``close`` (the context manager's exit),
on SIGTERM or SIGHUP while open, and at interpreter exit, after ending every process still in
them; those of a run whose process died (SIGKILL) are removed by the next run. Needs root and
``ip`` (iproute2); ``unavailable()`` says why a cluster cannot be made here.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MPIEXEC = Path(sys.executable).parent / "mpiexec"
SUBNET = "10.23.0"
# TCP between ranks over eth0, never shared memory (MPICH's own: NOLOCAL): libfabric's tcp
# provider (the ofi netmod). The wheel's default netmod, UCX, has a tcp transport too
# (UCX_TLS=tcp,self), but it measured 100 ms stalls in a third of its 25 MiB Allreduces and half
# the link's rate on 4 hosts; libfabric's came within 4% (2 hosts) and 17% (4) of the model.
TCP_ONLY = {
    "MPIR_CVAR_NOLOCAL": "1",
    "MPIR_CVAR_CH4_NETMOD": "ofi",
    "FI_PROVIDER": "tcp",
    "FI_TCP_IFACE": "eth0",
}
_PREFIX = "nfnet-"
_NAME = re.compile(rf"^{_PREFIX}(\d+)-\d+-(h\d+|sw)$")
_counter = itertools.count()
_open: set = set()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def namespaces() -> list[str]:
    """The names of this machine's network namespaces (``ip netns list``)."""
    listing = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def _remove_namespace(name: str) -> None:
    """End the processes in namespace ``name`` (a job of ours), then delete it."""
    for _ in range(50):
        pids = [int(p) for p in _ip("netns", "pids", name, check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    _ip("netns", "delete", name, check=False)


def remove_stale() -> list[str]:
    """Remove the namespaces of clusters whose process is gone (it was killed before it could
    clean up); returns their names."""
    stale = []
    for name in namespaces():
        found = _NAME.match(name)
        if not found:
            continue
        try:
            os.kill(int(found.group(1)), 0)
        except ProcessLookupError:
            stale.append(name)
        except PermissionError:  # alive, someone else's
            pass
    for name in stale:
        _remove_namespace(name)
    return stale


def ours() -> list[str]:
    """The namespaces of this process's clusters that exist now."""
    return [name for name in namespaces() if name.startswith(f"{_PREFIX}{os.getpid()}-")]


def unavailable() -> str | None:
    """Why a ``Cluster`` cannot be made on this machine, or None if it can (a namespace with a
    veth pair is made and removed to find out)."""
    if sys.platform != "linux":
        return "network namespaces are Linux's"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    if not MPIEXEC.exists():
        return f"mpiexec is missing ({MPIEXEC}): install numformer[distributed]"
    probe = f"{_PREFIX}{os.getpid()}-{next(_counter)}-sw"
    try:
        _ip("netns", "add", probe)
        _ip("-n", probe, "link", "add", "name", "probe0", "type", "veth", "peer", "name", "probe1")
        _ip("-n", probe, "link", "add", "name", "probe2", "type", "bridge")
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        return f"cannot make a network namespace with a veth pair and a bridge here ({err})"
    finally:
        _remove_namespace(probe)
    return None


class Cluster:
    """``hosts`` hosts on a private Ethernet segment; use as a context manager.

    Args:
        hosts: how many (1 to 200).
        private: a folder that hosts other than host 0 see empty (their own disk), or None.

    Raises:
        RuntimeError: a namespace or link could not be made (everything made is removed).
    """

    def __init__(self, hosts: int, private: str | os.PathLike | None = None):
        if not 1 <= hosts <= 200:
            raise ValueError(f"Cluster: hosts must be in [1, 200], got {hosts}")
        self.size = hosts
        self.private = None if private is None else Path(private).resolve()
        self.prefix = f"{_PREFIX}{os.getpid()}-{next(_counter)}-"
        self.switch = self.prefix + "sw"
        self.names = [f"{self.prefix}h{i}" for i in range(hosts)]
        self.addresses = [f"{SUBNET}.{i + 1}" for i in range(hosts)]
        self._folder: str | None = None
        self._previous: dict = {}

    # --- making and removing ----------------------------------------------------------------
    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        remove_stale()
        _open.add(self)
        self._catch_signals()
        try:
            _ip("netns", "add", self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for i, (name, address) in enumerate(zip(self.names, self.addresses)):
                _ip("netns", "add", name)
                # made inside the namespaces: no name in the machine's own namespace, no collision
                _ip("link", "add", "eth0", "netns", name, "type", "veth", "peer", "name", f"p{i}", "netns", self.switch)
                _ip("-n", self.switch, "link", "set", f"p{i}", "master", "br0", "up")
                _ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
                _ip("-n", name, "link", "set", "eth0", "up")
                _ip("-n", name, "link", "set", "lo", "up")
            self._folder = tempfile.mkdtemp(prefix=self.prefix)
            for i in range(1, self.size if self.private is not None else 0):
                self.disk(i).mkdir()
            self.launcher.write_text(self._launcher_script())
            self.launcher.chmod(0o755)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """End every process in the cluster's namespaces and remove them (idempotent)."""
        for name in [*self.names, self.switch]:
            if name in namespaces():
                _remove_namespace(name)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        _open.discard(self)
        self._restore_signals()

    def _catch_signals(self) -> None:
        """SIGTERM and SIGHUP raise SystemExit while the cluster is open, so ``close`` runs."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, _exit_on_signal)

    def _restore_signals(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    # --- running a job ----------------------------------------------------------------------
    @property
    def launcher(self) -> Path:
        return Path(self._folder) / "launcher.sh"

    def disk(self, host: int) -> Path:
        """What host ``host`` sees at ``private``: the folder itself for host 0, else a folder of
        its own (under the cluster's temporary folder, removed on ``close``)."""
        return self.private if host == 0 else Path(self._folder) / f"disk-h{host}"

    def _launcher_script(self) -> str:
        cases = []
        for i, (name, address) in enumerate(zip(self.names, self.addresses)):
            mount = ""
            if self.private is not None and i > 0:
                mount = f"mount --bind {shlex.quote(str(self.disk(i)))} {shlex.quote(str(self.private))} && "
            cases.append(f'  {address}) exec ip netns exec {name} sh -c {shlex.quote(mount)}"exec $*" ;;')
        return "\n".join(
            [
                "#!/bin/sh",
                "# Hydra's ssh launcher: WRAPPER [-x] HOST COMMAND; runs COMMAND in HOST's namespace",
                'while [ "${1#-}" != "$1" ]; do shift; done',
                "host=$1; shift",
                'case "$host" in',
                *cases,
                '  *) echo "launcher: $host is not a host of this cluster" >&2; exit 1 ;;',
                "esac",
                "",
            ]
        )

    def mpiexec(self, command: list[str], hosts: int | None = None) -> list[str]:
        """The command line that runs ``command`` once on each of the first ``hosts`` hosts
        (all by default), one rank per host, launched from host 0."""
        hosts = self.size if hosts is None else hosts
        return [
            "ip",
            "netns",
            "exec",
            self.names[0],
            str(MPIEXEC),
            "-launcher",
            "ssh",
            "-launcher-exec",
            str(self.launcher),
            "-hosts",
            ",".join(self.addresses[:hosts]),
            "-localhost",
            self.addresses[0],
            "-ppn",
            "1",
            "-n",
            str(hosts),
            *command,
        ]

    def run(self, command: list[str], hosts: int | None = None, env: dict | None = None, timeout: float = 120):
        """Run ``command`` as an MPI job on the hosts (``mpiexec``), TCP only; returns the
        ``CompletedProcess`` (stdout and stderr captured as text).

        Raises:
            subprocess.TimeoutExpired: the job ran past ``timeout`` seconds (its processes are
            ended first)."""
        full_env = {**os.environ, **(env or {}), **TCP_ONLY}
        try:
            return subprocess.run(
                self.mpiexec(command, hosts), capture_output=True, text=True, timeout=timeout, env=full_env
            )
        except subprocess.TimeoutExpired:
            self.end_jobs()
            raise

    def end_jobs(self) -> None:
        """End every process in the hosts' namespaces (a job that outlived its test)."""
        for name in self.names:
            for pid in self.pids(name):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def pids(self, name: str) -> list[int]:
        """The processes in namespace ``name`` now."""
        return [int(p) for p in _ip("netns", "pids", name, check=False).stdout.split()]

    # --- the links --------------------------------------------------------------------------
    def tx_bytes(self) -> list[int]:
        """Bytes each host has sent on its link (``eth0``'s counter) so far."""
        sent = []
        for name in self.names:
            info = json.loads(_ip("-n", name, "-j", "-s", "link", "show", "dev", "eth0").stdout)
            sent.append(int(info[0]["stats64"]["tx"]["bytes"]))
        return sent

    def shape(self, rate: str | None) -> None:
        """Limit every link to ``rate`` (``tc`` syntax, "1gbit", "10gbit") in both directions
        with a token bucket; None removes the limit.

        Raises:
            RuntimeError: ``tc`` refused (no ``tbf`` qdisc in this kernel)."""
        ends = [(name, "eth0") for name in self.names] + [(self.switch, f"p{i}") for i in range(self.size)]
        for namespace, device in ends:
            if rate is None:
                subprocess.run(
                    ["ip", "netns", "exec", namespace, "tc", "qdisc", "del", "dev", device, "root"], capture_output=True
                )
                continue
            bits = rate_bits(rate)
            # the bucket holds 2 ms at the rate (and at least two 64 KiB GSO packets), the queue 5 ms
            burst = max(int(bits / 8 * 0.002), 2 * 65536)
            command = ["tc", "qdisc", "replace", "dev", device, "root", "tbf", "rate", rate]
            command += ["burst", str(burst), "latency", "5ms"]
            done = subprocess.run(["ip", "netns", "exec", namespace, *command], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"tc: {' '.join(command)}: {done.stderr.strip()}")


def rate_bits(rate: str) -> float:
    """Bits per second of a ``tc`` rate ("1gbit", "10gbit", "500mbit")."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)bit", rate.lower())
    if not found:
        raise ValueError(f"rate: expected a number and kbit, mbit or gbit, got {rate!r}")
    return float(found.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[found.group(2)]


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


@atexit.register
def _close_all() -> None:
    for cluster in list(_open):
        cluster.close()
