"""`index --rebuild` builds beside the live index: a kill leaves the old one whole, the next rebuild resumes."""

from __future__ import annotations

import pytest

from torturelib import crash
from torturelib.trials import assert_trial

pytestmark = pytest.mark.torture
POINTS = crash.REBUILD_POINTS


@pytest.mark.parametrize("name", sorted(POINTS))
def test_killed_rebuild_leaves_the_old_index(server, scene, torture_dir, name):
    assert_trial(crash.rebuild_trial(server, scene, name, torture_dir / "rebuild", hooks=POINTS[name]))


def test_next_rebuild_resumes(server, scene, torture_dir):
    """Three batches were committed to the new generation before the kill: they are not embedded again."""
    trial = crash.rebuild_trial(server, scene, "resume", torture_dir / "rebuild", hooks=POINTS["after-third-commit"])
    embedded, contents = trial.data["embedded_by_next_rebuild"], trial.data["contents"]
    assert embedded is not None, trial.detail
    assert embedded < contents, f"the next rebuild embedded all {contents} contents again: it started over"


def test_old_index_answers_while_a_rebuild_runs(server, scene, torture_dir):
    """The rebuild is held after its third commit while this process opens and searches the index."""
    hooks = [{"target": crash.WRITE, "when": "after", "nth": 3, "action": "pause"}]
    assert_trial(crash.searchable_during_rebuild(server, scene, torture_dir / "rebuild", hooks))
