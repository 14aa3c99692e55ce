"""The session's real redis-server: reachable with redis-py, emptied per test, loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from tests.servers import RedisCluster, RedisServer, find_redis_server, free_port


def test_answers_ping_set_get(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping() is True
        assert client.set("semcache:probe", b"\x00blob\xff", ex=60) is True
        assert client.get("semcache:probe") == b"\x00blob\xff"
        assert client.ttl("semcache:probe") > 0
    finally:
        client.close()


def test_each_test_starts_with_an_empty_database(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        # the previous test's key is gone
        assert client.dbsize() == 0
        client.set("left-behind", b"1")
    finally:
        client.close()


def test_binds_loopback_without_persistence(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
    finally:
        client.close()


def test_stop_ends_the_process_by_pid(tmp_path: Path) -> None:
    assert find_redis_server().is_file()
    server = RedisServer(tmp_path)
    server.start()
    pid = server.pid
    assert pid is not None
    server.stop()
    assert server.pid is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"redis-server {pid} still running after stop()")


def test_free_ports_stay_under_the_bound() -> None:
    # The loopback range here is 32768-60999: most picks are above 40,000 and taken again.
    assert all(free_port(below=40_000) < 40_000 for _ in range(20))


def test_a_cluster_node_takes_a_port_its_bus_port_can_follow(tmp_path: Path) -> None:
    # A node's bus listens 10,000 above its port; on a port above 55,535 redis-server
    # exits at start ("Redis port number too high"), which failed a CI run.
    cluster = RedisCluster(tmp_path, masters=1)
    node = cluster.servers[0]
    try:
        node.start()
        assert node.port <= 55_535
        assert node.pid is not None
    finally:
        node.stop()
    refused = RedisServer(tmp_path / "high", args=("--cluster-enabled", "yes"))
    with pytest.raises(RuntimeError, match="did not start"):
        refused.start(port=60_000)
