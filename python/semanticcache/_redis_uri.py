"""``SEMANTIC_CACHE_REDIS_URI`` forms for Redis Cluster and Sentinel.

A single server is a ``redis://``, ``rediss://`` or ``unix://`` URI, read by redis-py's
own ``from_url``. The forms read here name several nodes, separated by commas:

- ``redis+cluster://[[user]:password@]host:port[,host:port...][/]`` (``rediss+cluster``:
  TLS): startup nodes of a Redis Cluster; the client learns the others from them.
- ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[?db=N]``: the
  Sentinels watching the master named ``service``; user and password are the master's.
  ``sentinel_password`` (a query parameter) authenticates to the Sentinels themselves.

A missing port is 6379 for a cluster node and 26379 for a Sentinel. Parsing never puts
the password in an error message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["CLUSTER_SCHEMES", "SENTINEL_SCHEMES", "RedisNodes", "parse_redis_nodes"]

CLUSTER_SCHEMES: Final = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES: Final = ("redis+sentinel",)
_DEFAULT_PORTS: Final = {"cluster": 6379, "sentinel": 26379}
# host, [IPv6], then an optional port.
_NODE: Final = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\[\]:,/@]+)(?::(?P<port>\d+))?")
_SERVICE: Final = re.compile(r"/([A-Za-z0-9._-]+)/?")
_SENTINEL_PARAMS: Final = frozenset({"db", "sentinel_password"})


@dataclass(frozen=True, slots=True)
class RedisNodes:
    """A Redis Cluster's startup nodes, or the Sentinels of one master."""

    mode: Literal["cluster", "sentinel"]
    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False
    service: str = ""
    """The master's name (Sentinel)."""
    db: int = 0
    sentinel_password: str | None = None


def parse_redis_nodes(uri: str) -> RedisNodes | None:
    """``uri`` read as a cluster or Sentinel URI; None for any other scheme.

    Raises ``ValueError`` naming what is wrong (never the password).
    """
    scheme, sep, _ = uri.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
        return None
    mode: Literal["cluster", "sentinel"] = "cluster" if scheme in CLUSTER_SCHEMES else "sentinel"
    try:
        parts = urlsplit(uri)
        username, password = parts.username, parts.password
    except ValueError:
        raise ValueError("cannot be parsed") from None
    if parts.fragment:
        raise ValueError("has a fragment")
    hosts = parts.netloc.rpartition("@")[2]
    nodes = tuple(_node(text, _DEFAULT_PORTS[mode]) for text in hosts.split(","))
    params = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
    user = unquote(username) if username else None
    secret = unquote(password) if password is not None else None
    if mode == "cluster":
        if parts.path not in ("", "/"):
            raise ValueError("has a path (a cluster has one database, 0)")
        if params:
            raise ValueError("has query parameters (none are accepted)")
        return RedisNodes("cluster", nodes, user, secret, tls=scheme.startswith("rediss"))
    service = _SERVICE.fullmatch(parts.path)
    if service is None:
        raise ValueError("has no master name (redis+sentinel://host:port/<service>)")
    names = [name for name, _ in params]
    unknown = sorted(set(names) - _SENTINEL_PARAMS)
    if unknown:
        raise ValueError(
            f"has unknown query parameters {unknown} (accepted: db, sentinel_password)"
        )
    if len(names) != len(set(names)):
        raise ValueError("repeats a query parameter")
    values = dict(params)
    db = values.get("db", "0")
    if not db.isdigit():
        raise ValueError("has an invalid database number")
    return RedisNodes(
        "sentinel",
        nodes,
        user,
        secret,
        service=service.group(1),
        db=int(db),
        sentinel_password=values.get("sentinel_password") or None,
    )


def _node(text: str, default_port: int) -> tuple[str, int]:
    match = _NODE.fullmatch(text)
    if match is None:
        # Not quoted: a password with an unescaped "/" or "?" ends up here.
        raise ValueError("has an invalid host list (host:port, comma-separated)")
    port = int(match["port"]) if match["port"] is not None else default_port
    if not 1 <= port <= 65535:
        raise ValueError("has an invalid port")
    return match["host"].strip("[]"), port
