"""The seeded simulation drives autoscaling with synthetic load curves (issue 13, point 5).

Cluster 1 of every world autoscales its stage 1 on RPS and DataDrop under a ramp, step, spike
or flapping load (adapters.sim.load); adapters.sim.checks.check_autoscaling looks at every
scaling (bounds, cooldown, no scale-down under a flapping load) after every step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

import pytest

import core.autoscaling as autoscaling
from adapters.sim.world import World
from core.autoscaling import AUTOSCALER_USER, Decision, Reason, StageAutoscaler
from core.events import StageScaled

SEEDS = range(40)


def scalings(world: World) -> Counter[tuple[str, str]]:
    """(curve, up|down) -> how many autoscaler scalings the run made."""
    seen: Counter[tuple[str, str]] = Counter()
    sizes: dict[tuple[str, int], int] = {}
    for e in world.master.store.events:
        if isinstance(e, StageScaled):
            before = sizes.get((e.job_id, e.stage))
            sizes[(e.job_id, e.stage)] = e.workers
            if e.user == AUTOSCALER_USER:
                curve = world.loads[e.job_id.rsplit("-", 1)[0]].name
                seen[(curve, "up" if "> " in e.reason else "down")] += 1
                assert before is None or before != e.workers
    return seen


def test_seeded_worlds_autoscale_under_every_curve_without_violations() -> None:
    total: Counter[tuple[str, str]] = Counter()
    for seed in SEEDS:
        world = World(seed)
        result = world.run()
        assert result.ok, (seed, result.violations[:1], result.trace[-10:])
        total += scalings(world)
    for curve in ("ramp", "step", "spike"):
        assert total[(curve, "up")] > 0 and total[(curve, "down")] > 0, total
    assert total[("flapping", "up")] > 0 and total[("flapping", "down")] == 0, total


def test_the_same_seed_autoscales_the_same_way() -> None:
    a, b = World(7), World(7)
    assert a.run().digest == b.run().digest
    assert scalings(a) == scalings(b) != Counter()


def _ignores_cooldown(monkeypatch: pytest.MonkeyPatch) -> None:
    real = StageAutoscaler.decide

    def decide(
        self: StageAutoscaler,
        signals: Mapping[Reason, float],
        current: int,
        now: float,
        last_scaled_at: float | None,
    ) -> Decision | None:
        return real(self, signals, current, now, None)

    monkeypatch.setattr(StageAutoscaler, "decide", decide)


def _no_flapping_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autoscaling._Window, "busy", lambda self, threshold: False)


@pytest.mark.parametrize(
    ("mutation", "seed", "kind"),
    [(_ignores_cooldown, 1, "autoscale"), (_no_flapping_guard, 8, "flapping")],
)
def test_seeded_runs_catch_a_broken_autoscaler(
    monkeypatch: pytest.MonkeyPatch,
    mutation: Callable[[pytest.MonkeyPatch], None],
    seed: int,
    kind: str,
) -> None:
    """Mutation tests: the seed passes with the real autoscaler and fails with a broken one."""
    assert World(seed).run().ok
    mutation(monkeypatch)
    result = World(seed).run()
    assert [v.kind for v in result.violations][:1] == [kind], result.violations
