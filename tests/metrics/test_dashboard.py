"""docs/grafana/semcache-dashboard.json queries only what the package exports: every
PromQL expression's metric names, label names and outcome values are checked against the
metric families :mod:`semanticcache._metrics` creates, so a renamed metric or label
fails here instead of leaving an empty panel."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest
from prometheus_client.metrics import MetricWrapperBase

from semanticcache._metrics import process_metrics
from semanticcache._results import DECIDED_MISSES, LookupReason

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "semcache-dashboard.json"
PAGE = ROOT / "docs" / "grafana.md"

# What the expressions may call besides metrics: PromQL functions, aggregations and
# keywords (a misspelt metric name is then an unknown word, not a new metric).
PROMQL_WORDS = frozenset(
    {
        "sum",
        "max",
        "min",
        "avg",
        "count",
        "rate",
        "irate",
        "increase",
        "histogram_quantile",
        "clamp_min",
        "by",
        "without",
        "ignoring",
        "on",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "label_values",
    }
)
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
# The values of the outcome label, per family.
OUTCOMES = {
    "semcache_lookups": {"exact_hit", "semantic_hit"} | (set(get_args(LookupReason)) - {"hit"}),
    "semcache_nearest_similarity": {"hit"} | set(DECIDED_MISSES),
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*')
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)", re.IGNORECASE
)
_WORD = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
# Grafana's variable query: label_values(metric, label).
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*(\w+)\s*\)")


@dataclass(frozen=True)
class Family:
    name: str
    labels: frozenset[str]


def exported() -> dict[str, Family]:
    """Every sample name the package's metric families expose -> its family."""
    families: dict[str, Family] = {}
    for value in vars(process_metrics()).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        (described,) = value.describe()
        labels = frozenset(value._labelnames)
        for suffix in SUFFIXES[described.type]:
            extra = {"le"} if suffix == "_bucket" else set()
            families[described.name + suffix] = Family(described.name, labels | extra)
    return families


def expressions(node: Any, where: str = "dashboard") -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every query in the dashboard: panel targets and variables."""
    if isinstance(node, dict):
        title = node.get("title") or node.get("name") or where
        for key, value in node.items():
            # A query variable's "query"; a data source variable's names a plugin.
            queried = key == "query" and node.get("type") != "datasource"
            if isinstance(value, str) and (key in ("expr", "definition") or queried):
                yield str(title), value
            else:
                yield from expressions(value, str(title))
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item, where)


def check_expression(expr: str, families: dict[str, Family]) -> list[str]:
    """The problems of one expression (empty when it only names what is exported)."""
    problems: list[str] = []
    named: list[Family] = []
    for metric, label in _LABEL_VALUES.findall(expr):
        if metric in families and label not in families[metric].labels:
            problems.append(f"{metric} has no label {label!r}")
    expr = _LABEL_VALUES.sub(lambda m: " " + m.group(1) + " ", expr)
    for metric, body in _MATCHERS.findall(expr):
        family = families.get(metric)
        if family is None:
            continue  # reported below, with the other words
        for label, op, quoted in _MATCHER.findall(body):
            if label not in family.labels:
                problems.append(f"{metric} has no label {label!r}")
            allowed = OUTCOMES.get(family.name) if label == "outcome" else None
            if allowed is None:
                continue
            value = json.loads(quoted)
            if op == "=" and value not in allowed:
                problems.append(f"{metric}: no outcome {value!r}")
            if op == "=~":
                pattern = re.compile(value)
                if not any(pattern.fullmatch(v) for v in allowed):
                    problems.append(f"{metric}: outcome=~{value!r} matches no outcome")
                for word in value.split("|"):
                    if re.fullmatch(r"[a-z_]+", word) and word not in allowed:
                        problems.append(f"{metric}: no outcome {word!r}")
        if not _MATCHER.findall(body) and body.strip():
            problems.append(f"{metric}: unparsed matchers {{{body}}}")
    # Everything else: strings, matchers, ranges and Grafana variables out of the way.
    bare = _MATCHERS.sub(lambda m: " " + m.group(1) + " ", _STRING.sub('""', expr))
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\$\{?\w+\}?", " ", bare)
    grouped: list[str] = []
    for _, labels in _GROUPING.findall(bare):
        grouped += [label.strip() for label in labels.split(",") if label.strip()]
    bare = _GROUPING.sub(lambda m: " " + m.group(1) + " ", bare)
    for word in _WORD.findall(bare):
        if word in families:
            named.append(families[word])
        elif word.lower() not in PROMQL_WORDS and not re.fullmatch(r"[eE]\d*", word):
            problems.append(f"unknown name {word!r}: not a metric the package exports")
    if not named:
        problems.append("names no metric of the package")
    for label in grouped:
        if not any(label in family.labels for family in named):
            problems.append(f"groups by {label!r}, a label of none of its metrics")
    return problems


def test_the_dashboard_queries_only_exported_metrics_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    families = exported()
    found = list(expressions(dashboard))
    assert len(found) >= 10, found
    problems = [
        f"{where}: {problem}: {expr}"
        for where, expr in found
        for problem in check_expression(expr, families)
    ]
    assert not problems, "\n".join(problems)


def test_every_panel_has_a_query_and_every_family_is_shown() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    text = " ".join(expr for _, expr in expressions(dashboard))
    shown = {family.name for name, family in exported().items() if name in text}
    every = {family.name for family in exported().values()}
    assert shown == every, every - shown
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_pages_alert_expressions_query_exported_metrics() -> None:
    blocks = re.findall(r"```promql\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)
    exprs = [
        " ".join(line for line in chunk.splitlines() if not line.lstrip().startswith("#"))
        for block in blocks
        for chunk in block.split("\n\n")
    ]
    assert len(exprs) >= 2
    families = exported()
    for expr in exprs:
        assert check_expression(expr, families) == [], expr


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("sum(rate(semcache_lookup_total[5m]))", "unknown name 'semcache_lookup_total'"),
        ('sum(rate(semcache_lookups_total{reason="x"}[5m]))', "has no label 'reason'"),
        ("sum by (dependency) (rate(semcache_lookups_total[5m]))", "groups by 'dependency'"),
        ('sum(rate(semcache_lookups_total{outcome="semantic-hit"}[5m]))', "no outcome"),
        ('sum(rate(semcache_lookups_total{outcome=~"exact_hit|hit"}[5m]))', "no outcome 'hit'"),
        ("histogram_quantile(0.5, sum by (le) (rate(semcache_embed_seconds[5m])))", "unknown"),
        ("semcache_breaker_state_total", "unknown name"),
        ("label_values(semcache_lookups_total, dependency)", "has no label 'dependency'"),
    ],
)
def test_the_check_catches_what_would_leave_a_panel_empty(expr: str, problem: str) -> None:
    problems = check_expression(expr, exported())
    assert any(problem in p for p in problems), problems


def test_the_check_accepts_what_the_package_exports() -> None:
    families = exported()
    for expr in (
        'sum by (outcome, route) (rate(semcache_lookups_total{route=~"$route"}[$__rate_interval]))',
        "histogram_quantile(0.99, sum by (le) (rate(semcache_lookup_seconds_bucket[5m])))",
        'sum by (le) (increase(semcache_nearest_similarity_bucket{outcome="hit"}[$__range]))',
        "max by (dependency) (semcache_breaker_state)",
        "label_values(semcache_lookups_total, route)",
    ):
        assert check_expression(expr, families) == [], expr
