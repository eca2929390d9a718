"""The `searchengine` command: one group; each command lives in the module of its family."""

from __future__ import annotations

import click

from .library import index_cmd, search_cmd, status_cmd
from .options import EngineGroup
from .serve import serve_cmd
from .setup import bundles_cmd, config_cmd, models_cmd
from .train import eval_cmd, train_cmd


@click.group(cls=EngineGroup)
@click.version_option(package_name="searchengine")
def cli() -> None:
    """Find photos by speaking, and spoken recordings by photo."""


for _command in (index_cmd, search_cmd, status_cmd, bundles_cmd, models_cmd, config_cmd, serve_cmd, train_cmd,
                 eval_cmd):
    cli.add_command(_command)


def main() -> None:
    """Entry point for `python -m searchengine`."""
    cli()
