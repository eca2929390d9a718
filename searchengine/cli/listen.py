"""`search --record [SECONDS]`: a spoken query from the microphone, with a level meter on stderr."""

from __future__ import annotations

import sys
import threading

import click

DEFAULT_SECONDS = 5.0
METER_WIDTH = 30
FLOOR_DB = -60.0  # the meter's empty end


def meter_line(level: float, elapsed: float, seconds: float) -> str:
    """One frame of the meter: time, a bar from FLOOR_DB to 0 dBFS, the level."""
    filled = round(METER_WIDTH * min(1.0, max(0.0, (level - FLOOR_DB) / -FLOOR_DB)))
    bar = "#" * filled + "-" * (METER_WIDTH - filled)
    return f"\rrecording {elapsed:4.1f}/{seconds:g} s [{bar}] {level:6.1f} dB  (Enter stops)"


def record_query(seconds: float, show_meter: bool):
    """Record the query: stops after `seconds`, on Enter (from a terminal), or after trailing silence."""
    from ..record import record

    stop = threading.Event()
    if sys.stdin is not None and sys.stdin.isatty():
        threading.Thread(target=_stop_on_enter, args=(stop,), daemon=True).start()
    on_level = None
    if show_meter:
        def on_level(level: float, elapsed: float) -> None:
            click.echo(meter_line(level, elapsed, seconds), nl=False, err=True)
    try:
        return record(seconds, on_level=on_level, stop=stop)
    finally:
        if show_meter:
            click.echo("", err=True)  # the next line starts below the meter


def _stop_on_enter(stop: threading.Event) -> None:
    try:
        sys.stdin.readline()
    except (OSError, ValueError):
        return
    stop.set()
