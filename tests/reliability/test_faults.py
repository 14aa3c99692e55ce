"""The reliability promises under faults and load (a short run of the suite's engine).

Postgres and Redis hang, are cut off, stopped, killed and started again while two
uvicorn workers serve a mixed load through the middleware. The promises: no 5xx, no
answer later than its budget allows, no wrong, partial, cross-tenant or cross-credential
answer, every answer traced to the handler call that made it, and hits again after each
fault without restarting anything. docs/RELIABILITY.md has the long run's figures.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.reliability.harness import RunReport, run


@pytest.mark.timeout(600)
async def test_faults_under_load(tmp_path: Path) -> None:
    report = await run(tmp_path, fault_seconds=6.0, recover_seconds=5.0, concurrency=8)
    # Messages are strings: pytest shortens any other message to a line.
    phases = json.dumps([asdict(p) for p in report.phases])
    assert report.total("requests") > 200, phases
    for name in (
        "errors_5xx",
        "transport_errors",
        "late",
        "wrong",
        "partial",
        "cross_tenant",
        "cross_credential",
    ):
        assert report.total(name) == 0, json.dumps({name: _phases_with(report, name)})
    assert report.untraced == 0, f"{report.untraced} answers name no matching call"
    for phase in report.phases:
        if phase.name.startswith("after ") or phase.name == "warm-up":
            # Recovery without a process restart: hits come back within the phase.
            assert phase.hits > 0, json.dumps(asdict(phase))


def _phases_with(report: RunReport, name: str) -> dict[str, object]:
    """The phases where ``name`` was counted, with what tells them apart (short enough
    to read whole in a failure message)."""
    return {
        "budget_seconds": report.budget_seconds,
        "late_bound_seconds": report.late_bound_seconds,
        **{
            p.name: {
                name: getattr(p, name),
                "requests": p.requests,
                "max_latency": p.max_latency,
                "rig_stall": p.rig_stall,
                "statuses": p.statuses,
                "late_answers": p.late_answers,
            }
            for p in report.phases
            if getattr(p, name)
        },
    }
