"""The torture harness shared by tests/torture (CI) and scripts/torture/run.py (long runs).

Modules, in the order a trial uses them:
  corpus      good media, tiny bundles, huge photos and PNG bombs, written on the fly
  badinput    one builder per kind of hostile file, with what a run must make of it
  forkserver  the parent side: runs `searchengine index` in killable children, or as a plain subprocess
  driver      the child side: a fork server that imports the engine once and forks a child per trial
  inject      monkeypatches installed in a child only (kill, pause, delete or rewrite a file at a point)
  diskfull    a small tmpfs filled to leave N KB free
  corrupt     damage to each file found in an index directory
  state       the invariants checked after every trial
  trials      the Trial record, the Scene (corpus + clean runs) and the typed-error / CLI checks
  crash       SIGKILL trials: injected points, random times, first migration, rebuilds
  damage      disk-full and corruption trials
  inputs      bad-input, memory, offline-root and identical-bytes trials
"""
