"""patchwave agent and patchwave serve: hosts that deliver their own results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from patchwave.cli.common import (
    BaselineOpt,
    ExceptionsOpt,
    InventoryOpt,
    StoreOpt,
    agent_app,
    app,
    err,
    load_baseline,
    log_line,
    open_store,
)
from patchwave.paths import project_paths


@agent_app.command("token")
def agent_token(host: Annotated[str, typer.Argument(help="The host (as named in the inventory).")],
                inventory: InventoryOpt = None, store: StoreOpt = None) -> None:
    """Make (or replace) a host's token for `patchwave serve`; printed once on stdout, only its
    SHA-256 is stored. Give it to the host through Ansible Vault or its environment."""
    from patchwave.ansible.inventory import load_hosts
    from patchwave.fleet.agent import new_token

    paths = project_paths()
    token = new_token(open_store(store), host, load_hosts(inventory or paths.lab_inventory))
    sys.stdout.write(token + "\n")
    err.print(f"token for {host} stored (as its SHA-256); it is not shown again")


@app.command("serve")
def serve_command(
    listen: Annotated[str, typer.Option(help="ADDRESS:PORT to listen on.")] = "127.0.0.1:8787",
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="Certificate (PEM) for HTTPS.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Its private key (PEM).")] = None,
    inventory: InventoryOpt = None, baseline: BaselineOpt = None, exceptions: ExceptionsOpt = None,
    store: StoreOpt = None,
    max_connections: Annotated[int, typer.Option(help="Connections open at once; when full, the oldest one "
                                                      "without a valid token gives way.", min=1, max=10000)] = 64,
    header_timeout: Annotated[float, typer.Option(help="Seconds from connect to the last request header "
                                                       "(TLS handshake included).", min=0.5, max=600)] = 10,
    idle_timeout: Annotated[float, typer.Option(help="Longest silence on a connection, in seconds.",
                                                min=0.5, max=3600)] = 30,
) -> None:
    """Receive scan and assessment results from hosts in agent mode (a token per host); they are
    stored exactly as results fetched over SSH. Runs until stopped. Each connection has its own
    thread, deadlines and a place under --max-connections (see docs/security.md)."""
    from patchwave.ansible.inventory import load_hosts
    from patchwave.fleet.agent import Receiver, serve

    paths = project_paths()
    inv = inventory or paths.lab_inventory
    hosts = load_hosts(inv)
    receiver = Receiver(open_store(store), hosts, load_baseline(baseline, exceptions, hosts), log_line, paths=paths,
                        inventory=inv)
    server = serve(receiver, listen, tls_cert, tls_key, max_connections=max_connections,
                   header_timeout=header_timeout, idle_timeout=idle_timeout)
    scheme = "https" if tls_cert else "http"
    err.print(escape(f"listening on {scheme}://{listen}/v1/results for {len(hosts)} host(s)"))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
