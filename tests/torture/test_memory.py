"""Peak RSS of the indexer above the models on huge photos and PNG bombs: under 2 GB.

A child that passes the budget by 512 MB is killed (the machine is shared), which fails the test.
"""

from __future__ import annotations

import pytest

from torturelib import inputs
from torturelib.trials import assert_trial

pytestmark = pytest.mark.torture

BUDGET_MB = 2048


@pytest.fixture(scope="module")
def memory_results(server, torture_dir, tiny_bundle):
    folders = inputs.memory_inputs(torture_dir / "memory-inputs")
    trials = inputs.memory_trials(server, torture_dir / "memory", tiny_bundle, folders, budget_mb=BUDGET_MB,
                                  cap_mb=BUDGET_MB + 512)
    return {t.name: t for t in trials}


@pytest.mark.parametrize("name", ["24-photos-of-49MP", "12-pngs-of-49MP", "one-9999x9999-png-bomb", "four-png-bombs"])
def test_peak_rss_is_bounded(memory_results, name):
    trial = memory_results[name]
    assert trial.data["baseline_mb"] > 0
    assert_trial(trial)
