"""Plain queries as people type them: `search "two ducks"`, `search beach.jpg`, `search memo.m4a`."""

from __future__ import annotations

from pathlib import Path

import click


def infer_query(query: str | None, audio: Path | None, image: Path | None, text: str | None) -> dict:
    """The one query as audio=/image=/text=, taking a bare QUERY argument as a file when one exists there.

    A bare argument naming a media file is that file (by its name, else by its first bytes); anything
    else is text. Giving QUERY and one of --audio/--image/--text together is a usage error.
    """
    given = {"audio": audio, "image": image, "text": text}
    if query is None:
        return given
    if any(value is not None for value in given.values()):
        raise click.UsageError("give the query either as an argument or with --audio/--image/--text, not both")
    path = Path(query).expanduser()
    if not path.is_file():
        return {"audio": None, "image": None, "text": query}
    return {"audio": None, "image": None, "text": None} | {_file_kind(path): path}


def _file_kind(path: Path) -> str:
    """"image" or "audio" for an existing file; a UsageError for anything else (a text file, say)."""
    from ..media import kind_of_path, sniff

    kind = kind_of_path(path)
    if kind is not None:
        return kind.value
    with open(path, "rb") as handle:
        sniffed = sniff(handle.read(4096))
    if sniffed in ("image", "audio"):
        return sniffed
    raise click.UsageError(f"{path} is not a photo or a recording; to search for its name as text, "
                           f"use --text \"{path}\"")
