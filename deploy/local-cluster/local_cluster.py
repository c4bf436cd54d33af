"""Several serval replicas on several hosts of this machine: each replica in a network
namespace of its own (a veth pair to a bridge on the host), HAProxy in front with health checks
on /v2/health/ready, and the machine's Redis and PostgreSQL reachable from every namespace.

Run by hand (as root)::

    python deploy/local-cluster/local_cluster.py MODEL_REPOSITORY --replicas 3

or from Python (a pytest fixture, bench/scaling.py)::

    with LocalCluster(repo, replicas=3, redis_url=..., store=...) as cluster:
        httpx.get(cluster.url + "/v2/health/ready")

Layout: a bridge ``svb<id>`` holds 10.S.T.1/24 on the host; replica N lives in namespace
``sv<id>-rN`` at 10.S.T.(10+N); the load generator of the benchmark in ``sv<id>-lg`` at
10.S.T.9. Redis and PostgreSQL listen on the host's loopback only, so HAProxy also forwards
10.S.T.1:6379 and :5432 to them over TCP: the stores see a loopback client, as their
configuration (protected mode, pg_hba) expects, and nothing about them is changed.

Where namespaces are refused (no root, no ``ip netns``), the replicas run on 127.0.0.2/3/4
instead and ``LocalCluster.isolation`` says why.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

HTTP_PORT = 8000  # of every replica, inside its namespace
LB_PORT = 8080  # HAProxy's front end, on the bridge address
STATS_PORT = 8404
REDIS_PORT = 6379
POSTGRES_PORT = 5432


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _wait(condition: object, timeout_s: float, what: str) -> None:
    """Poll ``condition()`` until true or the deadline passes."""
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} within {timeout_s} s")


def _http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return int(reply.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Replica:
    """One serval process in its namespace (or on its loopback address)."""

    index: int
    address: str
    namespace: str | None
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.address}:{HTTP_PORT}"

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/v2/health/ready")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@dataclass
class LocalCluster:
    """Replicas of ``serval serve model_repository`` behind HAProxy; a context manager."""

    model_repository: Path
    replicas: int = 3
    redis_url: str | None = None  # as the host sees it (127.0.0.1); rewritten for replicas
    store: str | None = None  # postgresql:// URL as the host sees it; rewritten likewise
    extra_args: Sequence[str] = ()
    # Seconds a replica given SIGTERM answers 503 on readiness while it still serves: four of
    # HAProxy's health checks (250 ms, out after 2 failures), so it is out of rotation first.
    drain_delay_s: float = 1.0
    cpus: Sequence[str] | None = None  # taskset CPU list of each replica, e.g. ["0", "1"]
    cpu_quota: float | None = None  # cores per replica (cgroup v1 cpu.cfs_quota_us)
    env: dict[str, str] = field(default_factory=dict)
    keep_work: bool = False  # keep the folder of logs and HAProxy's config after close
    isolation: str = ""  # "netns", or why the loopback fallback was used
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="serval-cluster-")))
    members: list[Replica] = field(default_factory=list)
    _id: str = field(default_factory=lambda: f"{random.randrange(16**4):04x}")
    _subnet: str = ""
    _haproxy: subprocess.Popen[bytes] | None = None
    _cgroups: list[Path] = field(default_factory=list)
    # The bridge address is this cluster's own; on the loopback fallback free ports are taken.
    lb_port: int = LB_PORT
    stats_port: int = STATS_PORT

    # -- addresses ---------------------------------------------------------------------------

    @property
    def host_address(self) -> str:
        """Where the namespaces reach the host (HAProxy, Redis, PostgreSQL)."""
        return f"{self._subnet}.1" if self.isolation == "netns" else "127.0.0.1"

    @property
    def url(self) -> str:
        """The load balancer, as the host (and the load generator's namespace) reaches it."""
        return f"http://{self.host_address}:{self.lb_port}"

    @property
    def stats_url(self) -> str:
        return f"http://{self.host_address}:{self.stats_port}/stats;csv"

    @property
    def bridge(self) -> str:
        return f"svb{self._id}"

    def namespace(self, name: str) -> str:
        return f"sv{self._id}-{name}"

    def _replica_url(self, url: str, port: int) -> str:
        """``url`` with its loopback host replaced by the address replicas reach it on."""
        return url.replace(f"127.0.0.1:{port}", f"{self.host_address}:{port}")

    # -- network -----------------------------------------------------------------------------

    def _setup_network(self) -> None:
        if os.geteuid() != 0:
            self._fallback("not root: `ip netns add` needs CAP_SYS_ADMIN")
            return
        used = _ip("-4", "route").stdout
        for _ in range(50):
            subnet = f"10.{random.randrange(200, 250)}.{random.randrange(256)}"
            if f"{subnet}." not in used:
                break
        self._subnet = subnet
        probe = _ip("netns", "add", self.namespace("probe"), check=False)
        if probe.returncode != 0:
            self._fallback(f"`ip netns add` refused: {probe.stderr.strip()}")
            return
        _ip("netns", "del", self.namespace("probe"), check=False)
        self.isolation = "netns"
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def _fallback(self, why: str) -> None:
        self.isolation = f"loopback addresses 127.0.0.2-4 ({why})"
        self.lb_port, self.stats_port = _free_port(), _free_port()

    def add_host(self, name: str, last_octet: int) -> str:
        """A namespace ``name`` with a veth pair to the bridge; its address."""
        namespace = self.namespace(name)
        address = f"{self._subnet}.{last_octet}"
        if _ip("netns", "pids", namespace, check=False).returncode == 0:
            return address  # made before (a restarted replica keeps its host)
        outside, inside = f"sv{self._id}{name}h", f"sv{self._id}{name}n"
        _ip("netns", "add", namespace)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        run = ("netns", "exec", namespace, "ip")
        _ip(*run, "addr", "add", f"{address}/24", "dev", inside)
        _ip(*run, "link", "set", inside, "up")
        _ip(*run, "link", "set", "lo", "up")
        _ip(*run, "route", "add", "default", "via", f"{self._subnet}.1")
        return address

    def in_namespace(self, name: str, command: Sequence[str]) -> list[str]:
        """``command`` run inside host ``name``'s namespace (as is, without namespaces)."""
        if self.isolation != "netns":
            return list(command)
        return ["ip", "netns", "exec", self.namespace(name), *command]

    def _teardown_network(self) -> None:
        if self.isolation != "netns":
            return
        listed = _ip("netns", "list", check=False).stdout.split()
        for namespace in listed:
            if namespace.startswith(f"sv{self._id}-"):
                _ip("netns", "del", namespace, check=False)
        _ip("link", "del", self.bridge, check=False)

    # -- HAProxy -----------------------------------------------------------------------------

    def _haproxy_config(self) -> str:
        servers = "\n".join(
            f"    server r{r.index} {r.address}:{HTTP_PORT} check inter 250ms fall 2 rise 2"
            for r in self.members
        )
        host = self.host_address
        return f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout queue 30s
    # A replica busy with its share of a heavy load answers its probe late, not never.
    timeout check 2s
frontend serval
    bind {host}:{self.lb_port}
    default_backend replicas
backend replicas
    balance roundrobin
    # A request to a replica that is stopping (refused, closed before an answer) goes to
    # another one: the body is buffered so that it can be sent again.
    option http-buffer-request
    retries 3
    retry-on conn-failure empty-response response-timeout 503
    option redispatch 1
    option httpchk GET /v2/health/ready
    http-check expect status 200
    default-server on-marked-down shutdown-sessions
{servers}
listen stats
    bind {host}:{self.stats_port}
    stats enable
    stats uri /stats
listen redis
    mode tcp
    bind {host}:{REDIS_PORT}
    server redis 127.0.0.1:{REDIS_PORT}
listen postgresql
    mode tcp
    bind {host}:{POSTGRES_PORT}
    server postgresql 127.0.0.1:{POSTGRES_PORT}
"""

    def _start_haproxy(self) -> None:
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        config = self.work / "haproxy.cfg"
        text = self._haproxy_config()
        if self.isolation != "netns":  # the stores are on loopback already
            text = text.split("listen redis")[0]
        config.write_text(text)
        log = (self.work / "haproxy.log").open("wb")
        self._haproxy = subprocess.Popen(
            [haproxy, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        _wait(lambda: _http_ok(self.stats_url), 10, "HAProxy answering")

    @property
    def haproxy_pid(self) -> int | None:
        return self._haproxy.pid if self._haproxy is not None else None

    def backends_up(self) -> int:
        """How many replicas HAProxy routes to now (its health checks passed)."""
        with urllib.request.urlopen(self.stats_url, timeout=2) as reply:
            lines = reply.read().decode().splitlines()
        return sum(
            1
            for line in lines
            if line.startswith("replicas,r") and line.split(",")[17].startswith("UP")
        )

    # -- replicas ----------------------------------------------------------------------------

    def _cgroup(self, replica: Replica) -> Path | None:
        if self.cpu_quota is None:
            return None
        group = Path("/sys/fs/cgroup/cpu") / f"serval-{self._id}-r{replica.index}"
        group.mkdir(exist_ok=True)
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text(str(int(self.cpu_quota * 100000)))
        if group not in self._cgroups:
            self._cgroups.append(group)
        return group

    def start_replica(self, index: int) -> Replica:
        """Start (or restart) replica ``index``; returns once it is ready."""
        if index < len(self.members):
            replica = self.members[index]
            replica.restarts += 1
        else:
            if self.isolation == "netns":
                address = self.add_host(f"r{index}", 10 + index)
            else:
                address = f"127.0.0.{2 + index}"
            namespace = self.namespace(f"r{index}") if self.isolation == "netns" else None
            replica = Replica(index, address, namespace, self.work / f"r{index}.log")
            self.members.append(replica)
        command = [
            sys.executable,
            "-m",
            "serval",
            "serve",
            str(self.model_repository),
            "--host",
            replica.address if self.isolation != "netns" else "0.0.0.0",
            "--http-port",
            str(HTTP_PORT),
            "--grpc-port",
            "0",
            "--state-dir",
            str(self.work / f"state-r{index}"),
            "--drain-delay-s",
            f"{self.drain_delay_s:g}",
            *self.extra_args,
        ]
        if self.redis_url:
            command += ["--redis-url", self._replica_url(self.redis_url, REDIS_PORT)]
        if self.store:
            command += ["--store", self._replica_url(self.store, POSTGRES_PORT)]
        if self.cpus:
            command = ["taskset", "-c", self.cpus[index % len(self.cpus)], *command]
        command = self.in_namespace(f"r{index}", command)
        group = self._cgroup(replica)
        log = replica.log_path.open("ab")
        replica.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            # Its own cgroup before it starts: every thread it makes inherits the quota.
            preexec_fn=(lambda: _join(group)) if group is not None else None,  # noqa: PLW1509
        )
        log.close()

        def up() -> bool:
            if not replica.running():
                raise RuntimeError(f"replica {index} exited:\n{replica.log()}")
            return replica.ready()

        _wait(up, 90, f"replica {index} ready")
        return replica

    def stop_replica(self, index: int, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        """Signal replica ``index`` and wait for it to exit; its exit code."""
        replica = self.members[index]
        assert replica.process is not None
        if replica.process.poll() is None:
            # `ip netns exec` execs the command: the pid is serval's own.
            replica.process.send_signal(sig)
            try:
                replica.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()
        return replica.process.returncode

    def wait_routed(self, count: int, timeout_s: float = 30) -> None:
        """Until HAProxy routes to ``count`` replicas."""
        _wait(lambda: self.backends_up() == count, timeout_s, f"HAProxy routing to {count}")

    # -- the whole ---------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        try:
            self._setup_network()
            # Placeholders first so that HAProxy knows every server; they come up as they start.
            for index in range(self.replicas):
                if self.isolation == "netns":
                    self.add_host(f"r{index}", 10 + index)
            self.members = []
            for index in range(self.replicas):
                address = (
                    f"{self._subnet}.{10 + index}"
                    if self.isolation == "netns"
                    else f"127.0.0.{2 + index}"
                )
                namespace = self.namespace(f"r{index}") if self.isolation == "netns" else None
                self.members.append(Replica(index, address, namespace, self.work / f"r{index}.log"))
            self._start_haproxy()
            for index in range(self.replicas):
                self.start_replica(index)
                self.members[index].restarts = 0
            self.wait_routed(self.replicas)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for replica in self.members:
            if replica.running():
                self.stop_replica(replica.index, timeout_s=30)
        if self._haproxy is not None and self._haproxy.poll() is None:
            self._haproxy.terminate()
            self._haproxy.wait(10)
        for group in self._cgroups:
            with contextlib.suppress(OSError):
                group.rmdir()
        self._teardown_network()
        if not self.keep_work:
            shutil.rmtree(self.work, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _join(group: Path) -> None:
    (group / "tasks").write_text(str(os.getpid()))


@contextlib.contextmanager
def load_generator_host(cluster: LocalCluster) -> Iterator[list[str]]:
    """The command prefix that runs a load generator in a namespace of its own."""
    if cluster.isolation == "netns":
        cluster.add_host("lg", 9)
    yield cluster.in_namespace("lg", [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_repository", type=Path)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--store", default=None, help="postgresql://root@127.0.0.1:5432/test")
    args, extra = parser.parse_known_args(argv)
    cluster = LocalCluster(
        args.model_repository.resolve(),
        replicas=args.replicas,
        redis_url=args.redis_url,
        store=args.store,
        extra_args=extra,
        keep_work=True,
    )
    with cluster:
        print(f"isolation: {cluster.isolation}")
        for replica in cluster.members:
            print(
                f"replica {replica.index}: {replica.url} ({replica.namespace}) {replica.log_path}"
            )
        print(f"load balancer: {cluster.url}   stats: {cluster.stats_url}")
        print("Ctrl-C stops everything")
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    sys.exit(main())
