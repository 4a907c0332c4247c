"""``localpers config``: read and change the settings in config.toml.

Examples::

    localpers config list                          # every setting, and which are defaults
    localpers config get writer_model
    localpers config set writer_model ~/models/my.gguf
    localpers config set threads 1                 # the most threads localpers computes with
    localpers config unset threads                 # back to the default

Values are checked before anything is written (a model must be installed, a user must
exist), and the file is replaced atomically.
"""

from __future__ import annotations

import click

from ..errors import LocalpersError
from ..paths import Config, config_path


def _show(value: str | int) -> str:
    return str(value) if isinstance(value, int) else f'"{value}"'


@click.group()
def config() -> None:
    """Read and change settings (config.toml): models, threads, context size, default user, theme."""


@config.command(name="list")
def list_() -> None:
    """Every setting with its value; defaults are marked."""
    cfg, changed = Config.load(), set(Config.load().changed())
    for key in Config.keys():
        mark = "" if key in changed else "   # default"
        click.echo(f"{key} = {_show(getattr(cfg, key))}{mark}")
    click.echo(f"# {config_path()}{'' if config_path().exists() else ' (not created yet)'}")


def _require_key(key: str) -> None:
    if key not in Config.keys():
        raise LocalpersError(f"no setting named {key!r}; settings: {', '.join(Config.keys())}")


@config.command()
@click.argument("key")
def get(key: str) -> None:
    """Print the value of KEY."""
    _require_key(key)
    click.echo(getattr(Config.load(), key))


@config.command(name="set")
@click.argument("key")
@click.argument("value")
def set_(key: str, value: str) -> None:
    """Set KEY to VALUE (checked first; nothing is written when it is refused)."""
    from ..session import check_setting

    cfg = Config.load()
    cfg.set(key, value)
    check_setting(key, getattr(cfg, key))
    path = cfg.save()
    click.echo(f"{key} = {_show(getattr(cfg, key))}  (saved in {path})")


@config.command()
@click.argument("key")
def unset(key: str) -> None:
    """Put KEY back to its default."""
    _require_key(key)
    cfg = Config.load()
    setattr(cfg, key, getattr(Config(), key))
    cfg.save()
    click.echo(f"{key} = {_show(getattr(cfg, key))}  (default)")


commands = [config]
