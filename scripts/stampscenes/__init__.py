"""Stamp-scenes world: a deterministic paired image / spoken-caption data set.

Modules, one concern each: ``phrases`` (stamp text -> noun phrases, plurals), ``objects`` (photo
stamp discovery and the photo heuristic), ``backgrounds``, ``layout`` (placement and layout words),
``captions``, ``voices`` (TTS registry, held-out speakers, synthesis), ``splits``, ``scenes``
(deterministic planning), ``compose`` (pixels) and ``build`` (process pool, manifest, world.json).
The command-line entry point is ``scripts/make_stamp_scenes.py``.
"""
