"""kill -9 at injected points and at random times: nothing committed is lost, nothing dangles."""

from __future__ import annotations

import random

import pytest

from torturelib import crash
from torturelib.trials import assert_trial

pytestmark = pytest.mark.torture


@pytest.mark.parametrize("name", sorted(crash.CRASH_POINTS))
def test_kill_at_injected_point(server, scene, torture_dir, name):
    trial = crash.crash_trial(server, scene, name, torture_dir / "crash", hooks=crash.CRASH_POINTS[name])
    assert trial.data["killed"], trial.data
    assert_trial(trial)


# HEAD's first migration issues 13 statements, the generation-aware one about 20: these are reached by both.
@pytest.mark.parametrize("statement", [3, 7, 10, 13])
def test_kill_during_first_migration(server, scene, torture_dir, statement):
    assert_trial(crash.migration_trial(server, scene, statement, torture_dir / "migration"))


@pytest.mark.parametrize("start", ["earlier", "fresh"])
def test_kill_at_random_times(server, scene, torture_dir, start):
    trials = crash.random_kill_trials(server, scene, torture_dir / "random", count=3, seed=7, start=start)
    failed = [t.line() for t in trials if not t.ok]
    assert not failed, "\n".join(failed)


def test_kill_a_plain_python_m_searchengine(scene, torture_dir):
    """No fork server: the real entry point, killed in the last third of a clean run's time (after imports)."""
    wall = crash.calibrate_plain(scene, torture_dir / "plain")
    delay = round(random.Random(3).uniform(0.67 * wall, 0.97 * wall), 2)
    trial = crash.plain_kill_trial(scene, torture_dir / "plain", delay, "plain-kill")
    assert_trial(trial)
