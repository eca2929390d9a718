"""A drive unplugged between runs keeps its entries (reported offline) until `index --prune`."""

from __future__ import annotations

import pytest

from torturelib import inputs
from torturelib.trials import assert_trial

pytestmark = pytest.mark.torture


def test_offline_root_keeps_entries_until_prune(torture_dir, tiny_bundle):
    assert_trial(inputs.offline_root_trial(torture_dir, tiny_bundle))
