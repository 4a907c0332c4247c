"""``localpers doctor`` and ``localpers models``: what is installed and where data lives."""

from __future__ import annotations

import platform

import click

from .. import models
from ..paths import Config, config_path, data_dir


@click.command()
def doctor() -> None:
    """Print versions, models found, threads and the data directory."""
    from importlib import metadata  # ~40 ms: here, not on every command's start

    cfg = Config.load()
    click.echo(f"localpers     {metadata.version('localpers')}")
    click.echo(f"python        {platform.python_version()} ({platform.system()} {platform.machine()})")
    for dist in ("llama-cpp-python", "onnxruntime", "torch", "transformers", "peft", "usearch", "textual", "cryptography", "sqlite-utils"):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "NOT INSTALLED"
        click.echo(f"{dist:<13} {version}")
    from ..threads import available

    click.echo(f"threads       at most {cfg.threads}; {available(cfg.threads)} now (fewer while other programs keep "
               "cores busy)")
    click.echo(f"data dir      {data_dir()}")
    click.echo(f"config        {config_path()}{'' if config_path().exists() else ' (not created; defaults in use)'}")
    click.echo(f"writer model  {cfg.writer_model}")
    click.echo("models:")
    for row in models.status():
        mark = "ok " if row["installed"] else "MISSING"
        click.echo(f"  {mark} {row['name']:<24} {row['role']:<10} {row['location']}")


@click.command(name="models")
@click.option("--assemble", is_flag=True, help="Assemble and verify every embedded model now.")
def models_cmd(assemble: bool) -> None:
    """List the embedded base models (any GGUF path works too)."""
    for spec in models.REGISTRY.values():
        line = f"{spec.name:<24} {spec.role:<10} {spec.description}"
        if assemble:
            line += f"\n    -> {models.ensure(spec.name)}"
            if spec.role == "embedding":  # the torch-free form the product runs
                line += f"\n    -> {models.ensure_onnx(spec.name)}"
        click.echo(line)


commands = [doctor, models_cmd]
