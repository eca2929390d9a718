"""Each kind of hostile file, in its own folder: no hang, no traceback, the outcome each kind promises.

FIFOs and links to devices can block a run forever, so every run is a child with a timeout (several
times what a run of these folders takes).
"""

from __future__ import annotations

import pytest

from torturelib import badinput, inputs
from torturelib.trials import assert_trial

pytestmark = pytest.mark.torture

TIMEOUT_S = 20  # a run of one of these folders takes 1-3 s here


@pytest.mark.parametrize("kind", list(badinput.KINDS))
def test_bad_input_kind(server, torture_dir, tiny_bundle, kind):
    assert_trial(inputs.bad_input_trial(server, kind, torture_dir / "bad-input", tiny_bundle, timeout=TIMEOUT_S))


@pytest.mark.parametrize("first,second", [("twin.wav", "twin.jpg"), ("twin.png", "twin.wav")])
def test_identical_bytes_added_later_are_judged_on_their_own(torture_dir, tiny_bundle, first, second):
    assert_trial(inputs.twin_link_trial(torture_dir / "twins", tiny_bundle, first, second))
