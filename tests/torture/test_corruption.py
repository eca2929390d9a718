"""Damage each file of a complete index (found by walking the directory): rebuild FAISS, refuse the rest cleanly.

Two layouts: a first build, and the same index after a `--rebuild` (generation folders and their
pointer, where the engine makes them). The damages per file class are in torturelib/corrupt.py.
Only combinations that exist are collected: a clean close leaves no SQLite WAL or shared-memory file
(those states are what the kill trials of test_crash.py leave behind, and their invariants are checked
there), and CURRENT appears only once a rebuild has published a generation.
"""

from __future__ import annotations

import pytest

from torturelib import corrupt, damage

pytestmark = pytest.mark.torture

LAYOUTS = ["first-build", "after-rebuild"]
ABSENT = {("sqlite-aux", "first-build"), ("sqlite-aux", "after-rebuild"), ("other", "first-build")}
CASES = [(layout, cls, mode) for layout in LAYOUTS for cls, modes in corrupt.MODES.items() for mode in modes
         if mode != "garble-page" and (cls, layout) not in ABSENT]


def files_of(scene, layout, cls):
    found = [rel for rel in corrupt.index_files(scene.layout(layout)) if corrupt.file_class(rel) == cls]
    assert found, f"no {cls} file in the {layout} layout: the index layout changed, update ABSENT"
    return found


def run_all(trials) -> None:
    failed = [t.line() for t in trials if not t.ok]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("layout,cls,mode", CASES)
def test_damaged_file(scene, torture_dir, layout, cls, mode):
    run_all([damage.corruption_trial(scene, rel, mode, torture_dir / "corrupt", layout=layout)
             for rel in files_of(scene, layout, cls)])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("where", ["second", "middle", "last"])
def test_garbled_sqlite_page(scene, torture_dir, layout, where):
    """A page of random bytes inside the database: a typed one-line error, or (if unused) no harm at all."""
    trials = []
    for rel in files_of(scene, layout, "sqlite"):
        pages = corrupt.sqlite_pages(scene.layout(layout) / rel)
        page = {"second": min(2, pages), "middle": max(1, pages // 2), "last": pages}[where]
        trials.append(damage.corruption_trial(scene, rel, "garble-page", torture_dir / "corrupt", page=page,
                                              layout=layout))
    run_all(trials)
