"""`searchengine serve`: the web page and JSON API over one index, run by uvicorn."""

from __future__ import annotations

import errno
import ipaddress
import json
import socket

import click

from .options import apply_threads, db_option, device_option, index_option, json_option, precision_option, threads_option

TOKEN_ENV = "SEARCHENGINE_TOKEN"


@click.command("serve")
@index_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 exposes it to the network).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--token", envvar=TOKEN_ENV, default=None, show_envvar=True,
              help="Access token every /api call must carry (Bearer header or ?token=).")
@click.option("--max-upload-mb", default=25.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Largest query upload accepted.")
@click.option("--read-timeout", default=20.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds a client may take to send its request headers, and each piece of a body (then 408).")
@click.option("--max-uploads", default=16, show_default=True, type=click.IntRange(min=1),
              help="Searches received, queued or run at once; more are refused with 503.")
@click.option("--max-searches", default=2, show_default=True, type=click.IntRange(min=1),
              help="Searches decoding and encoding at once (memory); the others wait for a slot.")
@db_option
@device_option
@precision_option
@threads_option
@json_option
def serve_cmd(index_dir, host, port, token, max_upload_mb, read_timeout, max_uploads, max_searches, db, device,
              precision, threads, as_json) -> None:
    """Serve the search page and JSON API for an index."""
    apply_threads("query", threads)  # one thread a search: the server's parallelism is --max-searches
    from ..index import open_index
    from ..server import serving
    from ..server.app import create_app
    from ..server.limits import Limits

    limits = Limits(body_timeout=read_timeout, max_uploads=max_uploads, max_searches=max_searches)
    check_port_free(host, port)  # before loading models: a taken port should fail in a blink, not after them
    with open_index(index_dir, device=device, db=db, create=False, precision=precision) as idx:
        idx.load_models()  # missing weights fail here, and the first search is not slow
        app = create_app(idx, token=token or None, max_upload_bytes=int(max_upload_mb * 2**20), limits=limits)
        if as_json:  # one line a supervisor can parse before the server's own log starts
            click.echo(json.dumps({"url": page_url(host, port), "index": str(idx.path), "token": bool(token)}))
        else:
            click.echo(f"searchengine: serving {idx.path} at {page_url(host, port)}"
                       + (" (open it with ?token=<your token>)" if token else ""))
        if not token and not _is_loopback(host):
            click.echo(f"warning: {host} is reachable from other machines and no --token is set", err=True)
        serving.run(app, host, port, read_timeout=read_timeout)


def check_port_free(host: str, port: int) -> None:
    """A clear error when the address is taken or cannot be bound (uvicorn would only say so after loading)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # uvicorn sets it too: TIME_WAIT is no clash
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise click.ClickException(f"port {port} on {host} is in use (another server?): "
                                           f"choose another with --port, e.g. --port {port + 1}") from exc
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def page_url(host: str, port: int) -> str:
    """The address a browser should open (IPv6 in brackets, wildcard binds shown as localhost)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
