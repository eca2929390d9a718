"""Fixtures of the torture suite: one fork server, one scene (corpus + clean runs), one small tmpfs.

Everything heavy is session-scoped: the suite must finish in about five minutes on two cores, so the
long sweeps live in scripts/torture/run.py, which uses the same library (torturelib/).
The tiny bundles come from tests/conftest.py (`tiny_bundle`, `other_bundle`).
"""

from __future__ import annotations

import pytest

from torturelib import diskfull
from torturelib.forkserver import ForkServer
from torturelib.trials import make_scene

TMPFS_KB = 4096  # room for an index of the scene plus the free space a trial leaves


@pytest.fixture(scope="session")
def torture_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("torture")


@pytest.fixture(scope="session")
def server(torture_dir):
    """Children that run the real CLI; see torturelib/driver.py for why a fork server."""
    forks = ForkServer(torture_dir / "forkserver").start()
    yield forks
    forks.close()


@pytest.fixture(scope="session")
def scene(torture_dir, tiny_bundle, other_bundle):
    return make_scene(torture_dir / "scene", tiny_bundle, other_bundle)


@pytest.fixture(scope="session")
def small_disk(torture_dir):
    """A 4 MB tmpfs, or a skip that says why none can be mounted here."""
    mount = torture_dir / "tmpfs"
    reason = diskfull.mount_tmpfs(mount, TMPFS_KB)
    if reason:
        pytest.skip(reason)
    yield mount
    diskfull.umount(mount)
