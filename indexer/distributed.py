"""Embedding on Ray: the driver walks, plans and writes exactly as a local run; Ray actors decode and encode.

Each actor (EmbedWorker) loads the bundle once and embeds the batches the driver sends it: batches of
one kind, `batch_size` contents each (per kind with `RayOptions.batch_sizes`). It returns the new
contents (digest, vector, media facts, transcript); the driver commits them through the same Writer a
local run uses, so the index on disk is the same and every local command works on it.

Plain actors, not a Ray Data actor pool: the driver keeps IN_FLIGHT batches per actor and reads a
batch's bytes (with `ship_bytes`) only when it sends it, so driver and object-store memory stay bounded
for any folder size, also through a `ray://` client. A Ray Data pipeline starts from a materialised
dataset (`from_items` holds every row, and every shipped byte, at once), and the only place to read
files lazily would be a task pinned to the driver's node, which a `ray://` client does not have.

Failures: an actor that dies is restarted (it reloads the bundle) and Ray re-sends the batch it held
(TASK_RETRIES times; then the run stops with ClusterError, keeping every batch committed so far, so
a re-run continues). The driver commits each content key once, so a batch Ray ran twice cannot add
a row twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from searchengine.errors import ArgumentError, BundleMismatch, ClusterError
from searchengine.types import BundleInfo, Kind

from .pipeline import Pipeline
from .plan import ContentKey
from .ray_worker import EmbedWorker, Job, Outcome
from .walk import Candidate

LOCAL = "local"  # start a Ray instance on this machine for the run (or use the one this process started)
IN_FLIGHT = 2  # batches sent to each actor at a time: one it embeds, one waiting so it never idles
TASK_RETRIES = 3  # times a batch is sent again to a restarted actor before the run gives up
CPUS_PER_CPU_ACTOR = 4  # without GPUs: torch runs 4 threads well; more actors would each hold the model
# A cluster that answers but fails to start its per-client server (Ray's client proxy reports it as an
# aborted connection: seen once in a few joins on a loaded machine) usually starts one for the next try.
JOIN_ATTEMPTS = 3
log = logging.getLogger(__name__)
LOCAL_OBJECT_STORE = 512 << 20  # only in-flight batches live there: a local instance needs little


@dataclass
class RayOptions:
    """How an index run uses Ray.

    address: LOCAL, "auto" (the cluster this machine belongs to) or "ray://head:10001".
    ship_bytes: the driver reads each file and sends its bytes, for workers that cannot see the paths
        (default: workers read the paths, which must be on a filesystem every node mounts alike).
    workers: actors to start; default one per GPU of the cluster, each with its node's CPUs per GPU to
        decode, else one per CPUS_PER_CPU_ACTOR CPUs.
    batch_sizes: contents per batch by kind ("image", "audio"); default the run's batch size.
    load_kwargs: how workers load the bundle (device, clip_weights, whisper_model), as the index does.
    local_resources: more ray.init arguments when a local instance starts (num_cpus, object_store_memory).
    """

    address: str = LOCAL
    ship_bytes: bool = False
    workers: int | None = None
    batch_sizes: dict[str, int] = field(default_factory=dict)
    load_kwargs: dict = field(default_factory=dict)
    whisper: str | None = None  # workers write down recordings with it (index_paths decides)
    moments_after: float | None = None  # workers cut longer recordings into moments (index_paths decides)
    local_resources: dict = field(default_factory=dict)


def ray_options(ray, load_kwargs: dict) -> RayOptions | None:
    """The Ray settings of a run from what a caller passed (None/False, True, an address or RayOptions)."""
    if ray is None or ray is False:
        return None
    if ray is True:
        ray = LOCAL
    if isinstance(ray, str) and ray:
        ray = RayOptions(address=ray)
    if not isinstance(ray, RayOptions):
        raise ArgumentError(f"ray must be an address such as 'local', 'auto' or 'ray://head:10001', "
                            f"or RayOptions, not {ray!r}")
    return replace(ray, load_kwargs={**load_kwargs, **ray.load_kwargs})


def embed_on_ray(groups: dict[ContentKey, list[Candidate]], pipeline: Pipeline, options: RayOptions) -> None:
    """Embed the plan's new contents on Ray actors; commit their rows and report progress through `pipeline`."""
    if not groups:
        return  # nothing new: no cluster to start or join
    ray = _import_ray()
    with _connected(ray, options):
        actors = _start_actors(ray, pipeline.bundle.info, options)
        try:
            if pipeline.total:
                pipeline.progress(0)
            sizes = {kind: options.batch_sizes.get(kind.value, pipeline.batch_size) for kind in Kind}
            Dispatcher(ray, actors, groups, pipeline, options.ship_bytes).run(batches(groups, sizes))
        finally:
            for actor in actors:
                ray.kill(actor, no_restart=True)


def batches(groups: dict[ContentKey, list[Candidate]], sizes: dict[Kind, int]) -> Iterator[list[ContentKey]]:
    """The content keys in batches of one kind, `sizes[kind]` each; the partial ones last."""
    buffers: dict[Kind, list[ContentKey]] = {kind: [] for kind in Kind}
    for key in groups:
        buffer = buffers[key[1]]
        buffer.append(key)
        if len(buffer) >= max(1, sizes[key[1]]):
            yield buffer[:]
            buffer.clear()
    yield from (buffer for buffer in buffers.values() if buffer)


class Dispatcher:
    """Keeps every actor busy with IN_FLIGHT batches and commits each answer as it arrives."""

    def __init__(self, ray, actors: list, groups: dict[ContentKey, list[Candidate]], pipeline: Pipeline,
                 ship_bytes: bool):
        self.ray, self.actors, self.groups, self.pipeline, self.ship_bytes = ray, actors, groups, pipeline, ship_bytes
        self.pending: dict = {}  # ObjectRef -> (actor number, the batch's jobs)
        self.load = [0] * len(actors)
        self.committed: set[ContentKey] = set()

    def run(self, keyed_batches: Iterator[list[ContentKey]]) -> None:
        """Send every batch, waiting for answers whenever all actors hold IN_FLIGHT; then drain."""
        for keys in keyed_batches:
            while len(self.pending) >= IN_FLIGHT * len(self.actors):
                self._collect_one()
            jobs = self._jobs(keys)  # read only now: shipped bytes wait in the driver for one batch at most
            if not jobs:
                continue
            number = min(range(len(self.actors)), key=self.load.__getitem__)
            self.pending[self.actors[number].embed.remote(jobs)] = (number, jobs)
            self.load[number] += 1
        while self.pending:
            self._collect_one()

    def _jobs(self, keys: list[ContentKey]) -> list[Job]:
        """A batch's jobs: with ship_bytes each carries its file's bytes, read now (a file unreadable now is skipped)."""
        jobs = []
        for key in keys:
            first = self.groups[key][0]
            try:
                data = Path(first.path).read_bytes() if self.ship_bytes else None
            except OSError as exc:
                self.pipeline.skip(self.groups[key], f"unreadable: {exc.strerror or exc}")
                continue
            jobs.append(Job(key[0], first, data))
        return jobs

    def _collect_one(self) -> None:
        [ref], _ = self.ray.wait(list(self.pending), num_returns=1)
        number, jobs = self.pending.pop(ref)
        self.load[number] -= 1
        self._commit(jobs, self._result(ref, jobs))

    def _result(self, ref, jobs: list[Job]) -> Outcome:
        """The actor's answer; its own exception as a local run would raise it; ClusterError once retries ran out."""
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, Exception) else exc
            raise cause from exc
        except (exceptions.RayActorError, exceptions.WorkerCrashedError, exceptions.ObjectLostError) as exc:
            raise ClusterError(f"a Ray worker died {TASK_RETRIES + 1} times embedding a batch of {len(jobs)} "
                               f"files (the first: {jobs[0].path.path}); every batch before it is saved, run "
                               f"again to continue ({type(exc).__name__})") from exc

    def _commit(self, jobs: list[Job], outcome: Outcome) -> None:
        """Write the batch's contents with all their paths, and its failures as skips; each key only once."""
        key_of = {job.path.path: (job.digest, job.path.kind) for job in jobs}
        for path, reason in outcome.failed:
            if self._first_time(key_of[path]):
                self.pipeline.skip(self.groups[key_of[path]], reason, count=False)
        embedded = [(self.groups[key], content) for content in outcome.contents
                    if self._first_time(key := (content.content_hash, Kind(content.kind)))]
        if embedded:
            self.pipeline.commit(embedded)
        self.pipeline.progress(len(jobs))

    def _first_time(self, key: ContentKey) -> bool:
        if key in self.committed:
            return False
        self.committed.add(key)
        return True


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ClusterError("indexing with Ray needs the ray extra: pip install 'searchengine[ray]'") from exc
    return ray


@contextmanager
def _connected(ray, options: RayOptions):
    """Ray for the run: the one this process already started or joined, else a new local one or the cluster."""
    if ray.is_initialized():
        yield
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if options.address == LOCAL:
            ray.init(address=LOCAL, include_dashboard=False,
                     **{"object_store_memory": LOCAL_OBJECT_STORE, **quiet, **options.local_resources})
        else:
            _join(ray, options.address, quiet)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        if options.address == LOCAL:
            raise ClusterError(f"cannot start Ray here: {exc}") from exc
        raise ClusterError(f"cannot join the Ray cluster at {options.address}: {exc} (is it up; does it use token "
                           "authentication? then set RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN)") from exc
    try:
        yield
    finally:
        ray.shutdown()


def _join(ray, address: str, settings: dict) -> None:
    """ray.init on a cluster, tried again when the cluster answered but could not serve this client."""
    for attempt in range(1, JOIN_ATTEMPTS + 1):
        try:
            ray.init(address=address, **settings)
            return
        except ConnectionAbortedError:  # not "refused" or "timed out": a cluster that is down fails at once
            if attempt == JOIN_ATTEMPTS:
                raise
            log.warning("the Ray cluster at %s could not start a client server; trying again", address)
            time.sleep(attempt)


def _start_actors(ray, info: BundleInfo, options: RayOptions) -> list:
    """The actors, each loading the bundle from its name or folder; checked before any work is sent."""
    use_gpus = options.load_kwargs.get("device") != "cpu"
    count, num_cpus, num_gpus = actor_shape(ray.nodes(), options.workers, use_gpus)
    actor_class = ray.remote(EmbedWorker).options(
        num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=-1, max_task_retries=TASK_RETRIES)
    actors = [actor_class.remote(info.source, options.load_kwargs, max(1, int(num_cpus)), options.whisper,
                                 options.moments_after) for _ in range(count)]
    try:
        _check_ready(ray, actors, info)
    except BaseException:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        raise
    return actors


def actor_shape(nodes: list[dict], workers: int | None, use_gpus: bool) -> tuple[int, float, float]:
    """(actors, CPUs each, GPUs each) that fit on the cluster's live nodes (as `ray.nodes()` lists them).

    With GPUs: one actor per GPU, with the fewest CPUs per GPU any GPU node has (they decode for it).
    Without: one per CPUS_PER_CPU_ACTOR CPUs of each node. Asking for more `workers` shares them out.
    """
    live = [node["Resources"] for node in nodes if node.get("Alive", True)]
    gpu_nodes = [r for r in live if use_gpus and r.get("GPU", 0) >= 1]
    if gpu_nodes:
        gpus = sum(int(r["GPU"]) for r in gpu_nodes)
        count = workers or gpus
        share = min(1.0, gpus / count)
        return count, min(r.get("CPU", 1.0) / int(r["GPU"]) for r in gpu_nodes) * share, share
    per_actor = float(min(CPUS_PER_CPU_ACTOR, max((r.get("CPU", 1.0) for r in live), default=1.0)))
    fits = max(1, sum(int(r.get("CPU", 0) // per_actor) for r in live))
    count = workers or fits
    return count, per_actor * min(1.0, fits / count), 0.0


def _check_ready(ray, actors: list, info: BundleInfo) -> None:
    """Every actor loaded the bundle this index uses, with the same weights (their folder may differ per node)."""
    try:
        answers = ray.get([actor.ready.remote() for actor in actors])
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"a Ray worker could not start: {exc}") from exc
    for _pid, fingerprint, error in answers:
        if error is not None:
            raise error
        if fingerprint != info.fingerprint:
            raise BundleMismatch(f"the Ray workers load other weights for bundle '{info.name}' ({info.source}) "
                                 "than this machine: give every node the same bundle files")
