"""``localpers serve``: your writer as an OpenAI-compatible API on this machine.

Examples::

    localpers serve -u ada                      # http://127.0.0.1:8723/v1, prints a bearer token
    localpers serve -u ada --port 9000
    localpers serve -u ada --stop               # stop it (and lock the vault)
"""

from __future__ import annotations

import click

from .options import user_option_with

# The same as localpers.serve.DEFAULT_PORT / DEFAULT_QUEUE, written out so that every other
# command does not pay for importing the web stack.
DEFAULT_PORT, DEFAULT_QUEUE = 8723, 4


@click.command()
@user_option_with("Whose writer to serve (default: default_user in config.toml, else the demo profile).")
@click.option("--port", "-p", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --allow-remote.")
@click.option("--allow-remote", is_flag=True,
              help="Allow a non-loopback --host. Anyone who can reach it and learns the token can write as you.")
@click.option("--queue", "queue_size", type=click.IntRange(0, 64), default=DEFAULT_QUEUE, show_default=True,
              help="Requests that may wait while one is generated; more get 429 Too Many Requests.")
@click.option("--stop", is_flag=True, help="Stop the server running for this user (this locks the vault).")
def serve(user: str | None, port: int, host: str, allow_remote: bool, queue_size: int, stop: bool) -> None:
    """Serve your writer to local apps over an OpenAI-compatible HTTP API.

    Models: `localpers` (the base model with your adapter and examples from your
    history) and the base model. Every request needs the bearer token printed at
    start (also in a file readable only by you). The vault stays unlocked while the
    server runs; Ctrl+C or `localpers serve --stop` stops it and locks the vault.
    """
    from ..errors import LocalpersError
    from ..paths import Config
    from ..serve import check_host, serve as run_server, stop_server
    from ..vault import DEMO_USER, Vault

    name = user or Config.load().default_user or DEMO_USER
    if stop:
        if not stop_server(Vault.user_dir(name)):
            raise LocalpersError(f"no server is running for {name!r}")
        click.echo(f"Stopped the server for {name!r}; the vault is locked.")
        return
    check_host(host, allow_remote=allow_remote)  # before asking for a passphrase
    if allow_remote and host not in ("127.0.0.1", "::1", "localhost"):
        click.secho(f"WARNING: listening on {host}, beyond this machine. Anyone who can reach it and gets the "
                    "token can write in your voice and read what your writer produces. The traffic is NOT "
                    "encrypted (plain HTTP). Use this only on a network you control.", fg="red", bold=True, err=True)
    from ..cli import open_vault

    with open_vault(name) as vault:
        run_server(vault, host=host, port=port, allow_remote=allow_remote, queue_size=queue_size,
                   announce=lambda line: click.echo(line, err=False))
    click.echo("Server stopped; the vault is locked.")


commands = [serve]
