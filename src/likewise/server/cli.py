"""``likewise serve``: run the HTTP service on uvicorn (registered by :mod:`likewise.cli`).

Safety rule: binding anything but a loopback address needs at least one token (``--token`` or
``LIKEWISE_TOKENS``); with no tokens, the server accepts any or no token, which is only acceptable
when nothing but this machine can reach it. Token values are never printed or logged.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from pathlib import Path

import click

from ..database import Database
from ..errors import LikewiseError

__all__ = ["KERNEL_THREAD_DEFAULTS", "is_loopback", "serve"]

# One kernel thread per request: the server's parallelism comes from concurrent requests. Left to
# their defaults, faiss's OpenMP and numpy's OpenBLAS start a spinning thread team per worker thread,
# and on a busy machine a 0.3 ms search took 10-20 ms (measured; see docs/server.md). These must be
# set before the libraries load, hence the re-exec in serve(); a variable the user set is kept.
KERNEL_THREAD_DEFAULTS = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
}


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def _reexec_with_kernel_defaults() -> None:
    """Restart this process (same PID, same arguments) with :data:`KERNEL_THREAD_DEFAULTS` set."""
    if os.environ.get("LIKEWISE_SERVE_TUNED") or sys.argv[1:2] != ["serve"]:
        return  # already done, opted out, or not run from a command line (e.g. CliRunner)
    missing = {k: v for k, v in KERNEL_THREAD_DEFAULTS.items() if k not in os.environ}
    if not missing:
        return
    env = {**os.environ, **missing, "LIKEWISE_SERVE_TUNED": "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-c", "from likewise.cli import main; main()", *sys.argv[1:]], env)


def _configure_logging(level: str) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("likewise", "uvicorn"):
        base = logging.getLogger(name)
        base.handlers[:] = [handler]
        base.setLevel(numeric)
    access = logging.getLogger("likewise.access")  # one JSON object per line, nothing around it
    access_handler = logging.StreamHandler(sys.stderr)
    access_handler.setFormatter(logging.Formatter("%(message)s"))
    access.handlers[:] = [access_handler]
    access.propagate = False
    access.setLevel(numeric)


@click.command("serve")
@click.option(
    "--data",
    default=lambda: os.environ.get("LIKEWISE_DATA", "./likewise-data"),
    show_default="./likewise-data or $LIKEWISE_DATA",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory (env LIKEWISE_DATA).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8787, show_default=True, type=int, help="Port to bind.")
@click.option(
    "--token",
    "token_specs",
    multiple=True,
    metavar="TOKEN[:ROLE[:INDEX,...]]",
    help="Accept this bearer token; role read|write|admin (default admin), optionally scoped to indexes. "
    "Repeatable; also read from LIKEWISE_TOKENS (whitespace-separated).",
)
@click.option("--max-body-bytes", default=100_000_000, show_default=True, help="Largest request body accepted.")
@click.option("--max-batch", default=5000, show_default=True, help="Most vectors in one write request.")
@click.option("--model", "default_model", default=None, help="Default text model (a Hugging Face id).")
@click.option("--graceful-timeout", default=30, show_default=True, help="Seconds to drain requests on shutdown.")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@click.option(
    "--cluster",
    default=None,
    metavar="ADDRESS",
    help="Serve a sharded database on this Ray cluster (an address for ray.init, e.g. auto or "
    "ray://head:10001; 'local' starts Ray here). Needs the ray extra. --data holds its manifest.",
)
@click.option("--shards", default=None, type=int, help="With --cluster: shard count when creating the database.")
def serve(
    data: Path,
    host: str,
    port: int,
    token_specs: tuple[str, ...],
    max_body_bytes: int,
    max_batch: int,
    default_model: str | None,
    graceful_timeout: int,
    log_level: str,
    cluster: str | None,
    shards: int | None,
) -> None:
    """Serve the data directory over HTTP: native /v1 API, Cloudflare Vectorize v2 and Workers AI
    (/client/v4/accounts/…), OpenAI embeddings (/v1/embeddings), /healthz, /metrics, /openapi.json."""
    try:
        import uvicorn

        from .app import create_app
        from .auth import parse_token_spec, tokens_from_env
        from .models import DEFAULT_MODEL
    except ImportError as exc:
        raise click.ClickException(
            f"the server needs {exc.name!r}; install it with: pip install 'likewise[server]'"
        ) from exc
    try:
        tokens = [parse_token_spec(s) for s in token_specs] + tokens_from_env()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--token") from exc
    if not tokens and not is_loopback(host):
        raise click.UsageError(
            f"refusing to serve on {host} without a token: anyone who can reach it could read and write. "
            "Pass --token TOKEN (or set LIKEWISE_TOKENS), or bind 127.0.0.1."
        )
    _reexec_with_kernel_defaults()
    _configure_logging(log_level)
    if shards is not None and cluster is None:
        raise click.UsageError("--shards needs --cluster")
    try:
        target: Path | Database = data
        if cluster is not None:  # the sharded database (likewise.distributed), same HTTP API
            from ..distributed import open as open_sharded

            target = open_sharded(data, shards=shards, address=None if cluster == "local" else cluster)
        app = create_app(
            target,
            tokens=tokens,
            max_body_bytes=max_body_bytes,
            max_batch=max_batch,
            default_model=default_model or DEFAULT_MODEL,
            close_db=True,
        )
    except LikewiseError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"likewise serving {data} on http://{host}:{port} (auth {'on' if tokens else 'off'})", err=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,  # ours is structured and leaves out query strings and headers
        log_level=log_level,
        timeout_graceful_shutdown=graceful_timeout,
        log_config=None,
        server_header=False,
    )
