"""A plugin for Simon Willison's ``llm`` CLI: ``llm -m localpers "..."`` writes in your voice.

Install with ``pip install 'localpers[llm]'``; ``llm models`` then lists ``localpers``.
The prompt is an instruction for the writer (your adapter, examples of your own
writing, your style), exactly like ``localpers write``::

    export LOCALPERS_USER=ada                   # or default_user in config.toml
    llm -n -m localpers "Ask Tom to move our meeting to Thursday" -o max_tokens 120

The vault is unlocked with the OS keyring (``localpers user keyring on``) or
``LOCALPERS_PASSPHRASE``; the plugin never prompts. While ``localpers serve`` runs for
that user it holds the vault, so the plugin asks the running server instead.

``llm`` saves every prompt and response, unencrypted, in its own ``logs.db``. The
plugin refuses to run while that would happen: pass ``-n`` (``--no-log``) or turn
``llm`` logging off with ``llm logs off``.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from typing import Any

import click
import llm
from pydantic import Field

from .errors import LocalpersError, VaultLocked


@llm.hookimpl
def register_models(register: Any) -> None:
    register(LocalpersWriter())


class LocalpersWriter(llm.Model):
    """The user's writer: the base model with their adapter and examples from their history."""

    model_id = "localpers"
    can_stream = True

    class Options(llm.Options):
        max_tokens: int | None = Field(default=None, ge=1, le=2048, description="Most tokens to write (300)")
        temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling temperature (0)")
        user: str | None = Field(default=None, description="Whose vault (default: LOCALPERS_USER or config)")

    def execute(self, prompt: Any, stream: bool, response: Any, conversation: Any) -> Iterator[str]:
        if _llm_will_log():
            raise LocalpersError("llm would save your prompt and draft unencrypted in its logs.db: "
                                 "add -n (--no-log), or run `llm logs off`")
        instruction = prompt.prompt or ""
        options = {"max_tokens": prompt.options.max_tokens or 300, "temperature": prompt.options.temperature or 0.0}
        user = _user(prompt.options.user)
        try:
            vault = _open(user)
        except VaultLocked:  # `localpers serve` holds it: ask the server
            yield from _through_server(user, instruction, options)
            return
        try:
            from .writing.writer import Writer

            yield from Writer(vault).compose(instruction, **options)
        finally:
            vault.close()


def _llm_will_log() -> bool:
    """Whether the running ``llm`` command is about to write this exchange to its logs.db."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:  # called as a library: llm logs only when the caller asks it to
        return False
    if ctx.params.get("no_log"):
        return False
    # deferred: llm.cli imports the plugins, this one among them
    from llm.cli import logs_on

    return bool(ctx.params.get("log")) or logs_on()


def _user(name: str | None) -> str:
    from .paths import Config
    from .vault import DEMO_USER

    return name or os.environ.get("LOCALPERS_USER") or Config.load().default_user or DEMO_USER


def _open(user: str) -> Any:
    from .session import open_vault  # heavy: the vault, history and catalog, loaded only when llm runs our model

    return open_vault(user, os.environ.get("LOCALPERS_PASSPHRASE") or None)


def _through_server(user: str, instruction: str, options: dict) -> Iterator[str]:
    """Stream a draft from the ``localpers serve`` that holds ``user``'s vault."""
    from .serve import running_server
    from .vault import Vault

    server = running_server(Vault.user_dir(user))
    if server is None:
        raise VaultLocked(f"the vault of {user!r} is open in another localpers process; close it and try again")
    body = {"model": "localpers", "stream": True, "messages": [{"role": "user", "content": instruction}],
            "user": "llm", **options}
    request = urllib.request.Request(server["url"] + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {server['token']}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as answer:
        for raw in answer:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise LocalpersError(event["error"]["message"])
            piece = event["choices"][0]["delta"].get("content") if event["choices"] else None
            if piece:
                yield piece
