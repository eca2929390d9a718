"""Indexing on Ray (a real local instance, 2 CPUs): the same index as a local run, also when a worker dies."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from media_factory import make_image, tone, write_wav

from indexer.distributed import RayOptions, actor_shape
from indexer.ray_worker import EmbedWorker, Job
from indexer.walk import Candidate
from searchengine import open_index
from searchengine.errors import ArgumentError, BundleNotFound
from searchengine.types import Kind

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

ATOL = 1e-5
ACTOR_TITLE = b"ray::EmbedWorker"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """48 images, 16 recordings, one content under two paths, one corrupt file."""
    root = tmp_path_factory.mktemp("raymedia")
    for i in range(48):
        make_image(root / "photos" / f"p{i:02}.{'png' if i % 2 else 'jpg'}", i, size=(40 + i, 36 + i % 7))
    for i in range(16):
        write_wav(root / "voice" / f"c{i:02}.wav", tone(i, 0.6 + 0.1 * (i % 4)))
    shutil.copy(root / "photos" / "p03.png", root / "copy-of-p03.png")
    (root / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return root


@pytest.fixture(scope="module")
def local_run(media, tiny_bundle, tmp_path_factory):
    """The reference: the same folder indexed without Ray."""
    folder = tmp_path_factory.mktemp("local") / "index"
    with open_index(folder, tiny_bundle) as idx:
        report = idx.index([media], batch_size=8)
        return report.to_dict(), contents_by_path(idx)


def contents_by_path(idx) -> dict[str, tuple[str, np.ndarray]]:
    """path -> (kind, vector) from SQLite, after checking each content is held once in SQLite and in FAISS."""
    found = {}
    for kind in ("image", "audio"):
        ids, vectors = idx.metadata.vectors(kind)
        assert len(set(ids.tolist())) == len(ids)
        assert sorted(idx.vectors[kind].ids().tolist()) == sorted(ids.tolist())  # FAISS mirrors SQLite exactly
        stored = idx.metadata.lookup([int(i) for i in ids])
        for cid, vector in zip(ids, vectors):
            for held in stored[int(cid)].paths:
                assert held.path not in found
                found[held.path] = (kind, np.asarray(vector, dtype=np.float32))
    return found


def assert_same_index(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for path, (kind, vector) in want.items():
        assert got[path][0] == kind, path
        np.testing.assert_allclose(got[path][1], vector, atol=ATOL, err_msg=path)


def actor_pids() -> set[int]:
    """Processes of live EmbedWorker actors (Ray titles its worker processes after the actor class)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(ACTOR_TITLE):
                pids.add(int(entry.name))
        except OSError:
            continue  # the process ended while we looked
    return pids


def actors_gone(seconds: float = 15.0) -> bool:
    """Whether every actor process has exited (Ray reaps them after shutdown, a moment later on a busy machine)."""
    deadline = time.monotonic() + seconds
    while actor_pids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_killing_an_actor_mid_run_loses_and_duplicates_nothing(media, tiny_bundle, local_run, tmp_path):
    want_report, want = local_run
    seen: dict[str, set[int]] = {"before": set(), "after": set()}

    def kill_one_actor_once(event):
        if event.stage != "embedding" or seen["before"] or event.done < 12:
            return
        seen["before"] = actor_pids()
        os.kill(min(seen["before"]), signal.SIGKILL)  # its batch in flight is lost with it

    def watch(event):
        kill_one_actor_once(event)
        if seen["before"] and event.done > 12:
            seen["after"] |= actor_pids()

    events = []
    small = {"num_cpus": 2, "object_store_memory": 128 << 20}  # the run starts and stops this local instance
    options = RayOptions(workers=2, batch_sizes={"image": 4, "audio": 2}, local_resources=small)
    with open_index(tmp_path / "index", tiny_bundle) as idx:
        report = idx.index([media], ray=options, progress=lambda event: (events.append(event), watch(event)))
        assert len(seen["before"]) == 2
        assert seen["after"] - seen["before"], "Ray did not restart the killed actor"
        assert report.to_dict() == want_report
        assert report.embedded == 48 + 16  # the copy shares p03's content; the corrupt file is skipped
        assert_same_index(contents_by_path(idx), want)
        assert events[-1].stage == "embedding" and events[-1].done == events[-1].total == 48 + 16 + 1
        assert actors_gone() and not ray.is_initialized()  # the run stopped its actors and its Ray
    with open_index(tmp_path / "index") as reopened:  # and on disk: the FAISS files hold each content once
        assert_same_index(contents_by_path(reopened), want)


def test_workers_that_cannot_load_the_bundle_fail_the_run_with_its_error(media, tiny_bundle, tmp_path):
    """A bundle folder missing on the workers (here: gone after the driver loaded it) is the bundle's own error."""
    moved = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    with open_index(tmp_path / "index", moved) as idx:
        _ = idx.bundle  # the driver has its model
        shutil.rmtree(moved)
        small = {"num_cpus": 2, "object_store_memory": 128 << 20}
        with pytest.raises(BundleNotFound, match=re.escape(str(moved))):
            idx.index([media], ray=RayOptions(workers=1, local_resources=small))
        assert sum(idx.status().files.values()) == 0 and actors_gone() and not ray.is_initialized()


def test_a_worker_decodes_shipped_bytes_without_the_path(tiny_bundle, media):
    data = (media / "photos" / "p05.png").read_bytes()
    missing = Candidate("/nowhere/p05.png", Kind.IMAGE, len(data), 0)
    worker = EmbedWorker(str(tiny_bundle), {"device": "cpu"}, threads=1)
    outcome = worker.embed([Job("d1", missing, data), Job("d2", Candidate("/nowhere/x.png", Kind.IMAGE, 3, 0), b"bad")])
    assert [c.content_hash for c in outcome.contents] == ["d1"]
    assert outcome.contents[0].vector.shape == (16,) and (outcome.contents[0].width, outcome.contents[0].height) == (45, 41)
    [(path, reason)] = outcome.failed
    assert path == "/nowhere/x.png" and "'/nowhere/x.png'" in reason and "BytesIO" not in reason


def test_a_worker_cuts_moments_at_the_drivers_threshold_not_its_own(tiny_bundle, tmp_path, monkeypatch):
    """The driver resolves the threshold (flag or setting) and sends it: a worker's own environment does not count."""
    data = write_wav(tmp_path / "memo.wav", tone(4, 12.0)).read_bytes()
    memo = Candidate("/nowhere/memo.wav", Kind.AUDIO, len(data), 0)
    monkeypatch.setenv("SEARCHENGINE_MOMENTS_AFTER", "60")  # what the worker's machine would say
    cut = EmbedWorker(str(tiny_bundle), {"device": "cpu"}, threads=1, moments_after=5.0).embed([Job("d1", memo, data)])
    [content] = cut.contents
    assert content.moments and content.moments[-1].end == pytest.approx(12.0)
    whole = EmbedWorker(str(tiny_bundle), {"device": "cpu"}, threads=1, moments_after=20.0).embed([Job("d1", memo, data)])
    assert whole.contents[0].moments == ()


def index_command(media: Path, index: Path, bundle: Path, *ray_args: str, env: dict | None = None) -> dict:
    """Run `searchengine index ... --json` in its own process; its stdout must be the JSON summary alone."""
    cli = Path(sys.executable).with_name("searchengine")
    run = subprocess.run([str(cli), "index", str(media), "--index", str(index), "--bundle", str(bundle),
                          "--batch-size", "8", "--json", *ray_args], capture_output=True, text=True, timeout=300, env=env,
                         check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(run.stdout)


def test_the_cli_starts_its_own_ray_and_builds_the_local_index(media, tiny_bundle, local_run, tmp_path):
    want_report, want = local_run
    assert index_command(media, tmp_path / "index", tiny_bundle, "--ray") == want_report
    with open_index(tmp_path / "index") as idx:
        assert_same_index(contents_by_path(idx), want)
        hits = idx.search(image=media / "photos" / "p11.png", kind="image", k=1).hits  # local commands work on it
        assert hits[0].path == str(media / "photos" / "p11.png")
        again = idx.index([media], ray=RayOptions(address="ray://nowhere.invalid:1"))  # nothing new: no cluster
        assert (again.embedded, again.added, again.unchanged) == (0, 0, want_report["added"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    """A Ray cluster of one head node, started as an operator starts one (token authentication on)."""
    # A loaded CI machine can take longer than the client's first 5 s to answer a new client: give it 20.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "20"}
    client_port = free_port()
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               f"--port={free_port()}", f"--ray-client-server-port={client_port}", "--num-cpus=2",
               "--include-dashboard=false", f"--object-store-memory={128 << 20}", "--disable-usage-stats"]
    with open(tmp_path / "head.log", "w") as log:
        head = subprocess.Popen(command, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        # Up when `ray start` says so (the client port accepts earlier, before the cluster can serve a client).
        while not (_accepts(client_port) and "Ray runtime started" in (tmp_path / "head.log").read_text()):
            assert head.poll() is None and time.monotonic() < deadline, (tmp_path / "head.log").read_text()[-2000:]
            time.sleep(0.5)
        yield f"ray://127.0.0.1:{client_port}", env
    finally:
        head.terminate()  # `ray start --block` stops every process of its cluster on SIGTERM
        head.wait(60)


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_joining_a_cluster_with_shipped_bytes_builds_the_local_index(ray_head, media, tiny_bundle, local_run, tmp_path):
    """Through a `ray://` client, workers decode bytes the driver sends; skip reasons still name the file."""
    address, env = ray_head
    want_report, want = local_run
    got = index_command(media, tmp_path / "index", tiny_bundle, "--ray", address, "--ray-ship-bytes", env=env)
    assert got == want_report and got["skipped"][0]["path"].endswith("broken.jpg")
    with open_index(tmp_path / "index") as idx:
        assert_same_index(contents_by_path(idx), want)


def test_ray_options_are_checked_before_anything_runs(tiny_bundle, media, tmp_path):
    runner = CliRunner()
    from searchengine.cli import cli

    taken = runner.invoke(cli, ["index", "--ray", str(media), "--index", str(tmp_path / "i")])
    assert taken.exit_code == 2 and "put --ray after the paths" in taken.output
    lonely = runner.invoke(cli, ["index", str(media), "--index", str(tmp_path / "i"), "--ray-ship-bytes"])
    assert lonely.exit_code == 2 and "--ray-ship-bytes needs --ray" in lonely.output
    with open_index(tmp_path / "i", tiny_bundle) as idx, pytest.raises(ArgumentError, match="ray must be an address"):
        idx.index([media], ray=3)


def node(cpus: float, gpus: int = 0, alive: bool = True) -> dict:
    """One entry of `ray.nodes()`, as Ray reports a node's resources."""
    return {"Alive": alive, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


def test_actors_are_shaped_to_fit_the_nodes():
    assert actor_shape([node(2)], None, use_gpus=True) == (1, 2.0, 0.0)  # this machine: one actor, both cores
    assert actor_shape([node(2)], 2, use_gpus=True) == (2, 1.0, 0.0)  # asked for two: they share them
    # One actor per GPU, decoding on its node's share of cores; a CPU-only head node hosts none of them.
    assert actor_shape([node(4), node(96, 8), node(32, 2)], None, use_gpus=True) == (10, 12.0, 1.0)
    assert actor_shape([node(96, 8)], 16, use_gpus=True) == (16, 6.0, 0.5)
    assert actor_shape([node(96, 8)], None, use_gpus=False) == (24, 4.0, 0.0)  # --device cpu on a GPU node
    assert actor_shape([node(4), node(64), node(8, alive=False)], None, use_gpus=True) == (17, 4.0, 0.0)


def test_ray_loads_only_for_runs_that_ask_for_it():
    code = "import sys, searchengine, searchengine.cli, indexer, indexer.distributed; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


class _FlakyCluster:
    """Stands in for the `ray` module's init: the failures a client meets before a cluster serves it."""

    def __init__(self, *failures: BaseException):
        self.failures, self.calls = list(failures), 0

    def init(self, address, **_settings):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)


def test_a_cluster_that_could_not_start_a_client_server_is_tried_again():
    from indexer.distributed import JOIN_ATTEMPTS, _join

    aborted = ConnectionAbortedError("Initialization failure from server: Starting Ray client server failed")
    cluster = _FlakyCluster(aborted)
    _join(cluster, "ray://head:10001", {})
    assert cluster.calls == 2
    hopeless = _FlakyCluster(*[aborted] * JOIN_ATTEMPTS)
    with pytest.raises(ConnectionAbortedError):
        _join(hopeless, "ray://head:10001", {})
    assert hopeless.calls == JOIN_ATTEMPTS
    down = _FlakyCluster(ConnectionRefusedError("nothing listens"))  # a cluster that is down fails at once
    with pytest.raises(ConnectionRefusedError):
        _join(down, "ray://head:10001", {})
    assert down.calls == 1
