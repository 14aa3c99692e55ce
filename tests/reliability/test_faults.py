"""The reliability promises under faults and load (a short run of the suite's engine).

Postgres and Redis hang, are cut off, stopped, killed and started again while two
uvicorn workers serve a mixed load through the middleware. The promises: no 5xx, no
answer later than its budget allows, no wrong, partial, cross-tenant or cross-credential
answer, every answer traced to the handler call that made it, and hits again after each
fault without restarting anything. docs/RELIABILITY.md has the long run's figures.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from tests.reliability.harness import run


@pytest.mark.timeout(600)
async def test_faults_under_load(tmp_path: Path) -> None:
    report = await run(tmp_path, fault_seconds=6.0, recover_seconds=5.0, concurrency=8)
    detail = asdict(report)
    assert report.total("requests") > 200, detail
    for name in (
        "errors_5xx",
        "transport_errors",
        "late",
        "wrong",
        "partial",
        "cross_tenant",
        "cross_credential",
    ):
        assert report.total(name) == 0, (name, detail)
    assert report.untraced == 0, detail
    for phase in report.phases:
        if phase.name.startswith("after ") or phase.name == "warm-up":
            # Recovery without a process restart: hits come back within the phase.
            assert phase.hits > 0, (phase.name, detail)
