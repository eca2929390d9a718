"""What every trial family shares: the Trial record, the scene it runs on, and the CLI/error checks."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .corpus import good_corpus, grow_corpus
from .state import Snapshot, clean_reference, describe, loaded_bundle

# A message "naming the free space needed" names an amount: "about 1.2 MB free", "needs 300 KB" ...
SIZE = re.compile(r"\d+(\.\d+)?\s*(bytes|[KMGT]i?B)\b")


@dataclass
class Trial:
    """One trial's end: passed or not, why, and the figures the report prints."""

    family: str
    name: str
    ok: bool
    detail: str = ""
    data: dict = field(default_factory=dict)

    def line(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        return f"{verdict}  {self.family:10} {self.name}" + (f": {self.detail}" if self.detail else "")


def assert_trial(trial: Trial) -> None:
    """Fail a test with the trial's own account of what went wrong (the engineer reads this first)."""
    assert trial.ok, f"{trial.family} {trial.name}: {trial.detail}"


def verdict(family: str, name: str, problems: list[str], **data) -> Trial:
    return Trial(family, name, not problems, "; ".join(problems)[:1500], data)


@dataclass
class Scene:
    """A corpus and the clean runs every trial on it is judged against.

    `earlier` indexes the corpus as it was before grow_corpus (crash trials start from it: the index
    already has vectors and FAISS files). `full` indexes the final corpus (corruption and rebuild
    trials start from it) and is the reference for the final state. `rebuilt` is `full` after one
    `--rebuild` with the same bundle: the layout a rebuild leaves (generation folders, if the engine
    makes them), so corruption trials damage those files too.
    """

    root: Path
    bundle: Path
    other_bundle: Path
    earlier: Path
    full: Path
    reference: Snapshot
    other_reference: Snapshot
    rebuilt: Path | None = None

    @property
    def roots(self) -> list[Path]:
        return [self.root]

    def layout(self, name: str) -> Path:
        """An index of the final corpus as a first build, or as a rebuild leaves it."""
        return {"first-build": self.full, "after-rebuild": self.rebuilt}[name]

    @property
    def reference_dim(self) -> int:
        return next(iter(self.reference.indexed.values()))[1].shape[0]


def make_scene(workdir: Path, bundle: Path, other_bundle: Path) -> Scene:
    """Build the corpus in two states and the clean indexes of each (in this process: ~2 s)."""
    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    root = good_corpus(workdir / "media")
    clean_reference([root], loaded_bundle(bundle), workdir / "earlier")
    grow_corpus(root)
    reference = clean_reference([root], loaded_bundle(bundle), workdir / "full")
    other = clean_reference([root], loaded_bundle(other_bundle), workdir / "full-other")
    scene = Scene(root, bundle, other_bundle, workdir / "earlier", workdir / "full", reference, other)
    scene.rebuilt = _rebuilt_copy(scene, workdir / "rebuilt")
    return scene


def _rebuilt_copy(scene: Scene, target: Path) -> Path:
    from searchengine import open_index

    shutil.copytree(scene.full, target, symlinks=True)
    with open_index(target, str(scene.bundle), rebuild=True) as idx:  # by folder, as the CLI does
        idx.index([str(scene.root)])
    return target


def engine_errors():
    """The engine's exception classes; StorageError is None on an engine that predates it."""
    from searchengine import errors

    return errors.SearchEngineError, getattr(errors, "StorageError", None)


def typed_problems(exc: BaseException, *, storage: bool = False) -> list[str]:
    """An error the engine raised on purpose: the right class, one line (and a size for a full disk)."""
    base, storage_error = engine_errors()
    problems = []
    if not isinstance(exc, base):
        return [f"untyped error {describe(exc)}"]
    if storage and (storage_error is None or not isinstance(exc, storage_error)):
        problems.append(f"a full disk gave {type(exc).__name__}, not StorageError: {describe(exc)}")
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) != 1:
        problems.append(f"the message is {len(lines)} lines, not one")
    if storage and not SIZE.search(str(exc)):
        problems.append(f"the message names no amount of free space: {describe(exc)}")
    return problems


def cli(*args):
    """Run the CLI in this process (click's runner): exit code, output, and any exception that escaped."""
    from click.testing import CliRunner

    from searchengine.cli import cli as command

    return CliRunner().invoke(command, [str(a) for a in args])


def cli_problems(result, what: str, *, storage: bool = False) -> list[str]:
    """A command either works (exit 0) or fails with exit 1 and one line; never a traceback."""
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        return [f"`{what}` crashed with a traceback: {describe(exc)}"]
    if result.exit_code == 0:
        return []
    problems = [] if result.exit_code == 1 else [f"`{what}` exited {result.exit_code}, not 0 or 1"]
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        problems.append(f"`{what}` printed {len(lines)} lines, not one: {result.output.strip()[:300]!r}")
    if storage and not SIZE.search(result.output):
        problems.append(f"`{what}` does not name the free space needed: {result.output.strip()[:300]!r}")
    return problems
