"""A real full disk (tmpfs): a typed StorageError naming the space needed, and nothing lost once space is back.

60-120 KB and ~200 KB free are the levels that broke the engine before (a half-made schema; a 0-byte
FAISS file renamed into place).
"""

from __future__ import annotations

import pytest

from torturelib import damage
from torturelib.trials import assert_trial

pytestmark = pytest.mark.torture


@pytest.mark.parametrize("stage", damage.STAGES)
@pytest.mark.parametrize("level_kb", [0, 64, 96, 120, 200])
def test_full_disk(scene, small_disk, level_kb, stage):
    assert_trial(damage.disk_full_trial(scene, small_disk, level_kb, stage))
