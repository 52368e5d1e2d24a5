"""A small fleet in the test suite: the real master, matcher and file store against 1,000
simulated agents and 10,000 workers (adapters/sim/fleet.py; the 10,000-agent run is
bench/fleet.py). No invariant of the seeded simulation may break, every worker the fleet
asked for runs, and a master recovering the store serves them all."""

from __future__ import annotations

import pytest

from adapters.sim.__main__ import main
from adapters.sim.fleet import Fleet, FleetConfig

SMALL = FleetConfig(
    agents=1_000, jobs=100, workers=10_000, clusters=20, virtual_seconds=300, ramp_seconds=60
)


@pytest.mark.slow
def test_a_fleet_of_1000_agents_and_10000_workers_keeps_every_invariant() -> None:
    report = Fleet(SMALL).run()
    summary = report.summary()
    assert summary["violations"] == []
    assert report.checks >= SMALL.virtual_seconds // SMALL.check_every
    # Jobs were killed, replaced and scaled by +-2 along the way: about 100 workers a job.
    assert summary["jobs"] == SMALL.jobs
    assert abs(report.running_workers - SMALL.workers) < 200
    assert report.recovered_workers == report.running_workers
    assert report.heartbeats >= report.running_workers * (SMALL.virtual_seconds - 120) / 20
    assert len(report.steady_rounds_ms) > 50  # offer rounds went on after the ramp


def test_the_command_line_runs_a_fleet_and_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    spec = "agents=50,jobs=5,workers=200,clusters=2,ramp_seconds=10"
    assert main(["--fleet", spec, "--virtual-seconds", "60", "--json"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert '"violations": []' in last and '"agents": 50' in last


def test_a_bad_fleet_field_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--fleet", "agent=5"])
    assert exited.value.code == 2
    assert "agent=5" in capsys.readouterr().err
