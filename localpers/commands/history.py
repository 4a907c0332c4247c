"""``localpers import``, ``localpers search`` and ``localpers history ...``: the user's own history.

Examples::

    localpers import ~/Mail/Sent.mbox --from ada@example.com -u ada
    localpers import ~/notes ~/exports/emails.jsonl -u ada
    localpers import ratings.csv --user-id 196 -u ada
    localpers search "budget for the garden" --hybrid -k 5 -u ada
    localpers history list --kind email --limit 20 -u ada
    localpers history delete 3f2a... -u ada

Ctrl-C during an import stops after the current batch; running the same command
again resumes where it stopped.
"""

from __future__ import annotations

import json
import signal
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import LocalpersError
from ..text import clip
from .options import user_option, with_vault
from .progress import Progress

if TYPE_CHECKING:
    from ..vault import Vault

FORMATS = ["mbox", "maildir", "eml", "notes", "jsonl", "csv"]



def _open(user: str | None) -> Any:
    from ..cli import open_vault

    return open_vault(user)


def _day(ts: int | float | None) -> str:
    return datetime.fromtimestamp(ts or 0, tz=timezone.utc).strftime("%Y-%m-%d")


@click.command(name="import")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="What the sources are (default: guessed).")
@click.option("--kind", help="Store items under this kind instead of the importer's (email, note, ...).")
@click.option("--from", "sent_from", multiple=True, metavar="ADDRESS",
              help="Your email address; repeat for several. Mail from anyone else is skipped.")
@click.option("--text-field", help="JSONL: the field holding the text (default: email, text, content, body...).")
@click.option("--column", "columns", multiple=True, metavar="ROLE=NAME",
              help="CSV: which column plays which role (item, value, signal, time, user), e.g. item=asin.")
@click.option("--user-id", help="CSV: import only the rows of this user id.")
@click.option("--rating-scale", metavar="LOW-HIGH",
              help="CSV: the scale of the file's ratings, e.g. 1-10 (default 0.5-5 stars); other values are refused.")
@click.option("--min-words", default=3, show_default=True, help="Mail: drop messages with fewer words of your own.")
@click.option("--show-rejected", is_flag=True, help="List every rejected record (default: the first 10).")
@user_option
def import_cmd(sources: tuple[Path, ...], fmt: str | None, kind: str | None, sent_from: tuple[str, ...],
               text_field: str | None, columns: tuple[str, ...], user_id: str | None, rating_scale: str | None,
               min_words: int,
               show_rejected: bool, user: str | None) -> None:
    """Import your emails (mbox, Maildir, .eml), notes, JSONL or ratings CSV into your history.

    Re-importing adds nothing twice. Ctrl-C stops after the current batch; run the
    same command again to resume where it stopped.
    """
    from ..history import History

    roles = {}
    for spec in columns:
        role, sep, name = spec.partition("=")
        if not sep or not role.strip() or not name.strip():
            raise click.BadParameter(f"{spec!r}: use ROLE=NAME, e.g. item=asin", param_hint="--column")
        roles[role.strip()] = name.strip()
    vault = _open(user)
    cancel = threading.Event()

    def on_interrupt(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        click.echo("\nStopping after the current batch (Ctrl-C again to stop at once)...", err=True)

    previous = signal.signal(signal.SIGINT, on_interrupt) if threading.current_thread() is threading.main_thread() else None
    try:
        history = History(vault)
        from ..sources import open_source

        for path in sources:  # a source that cannot be read fails now, before any model loads
            open_source(path, format=fmt, kind=kind, sent_from=list(sent_from) or None, text_field=text_field,
                        columns=roles or None, user_id=user_id, min_words=min_words)
        for path in sources:
            bar = Progress(path.name, counts=False)
            try:
                if history._index is None:  # phases a user would otherwise wait through at 0%
                    bar.phase("loading the embedding model")
                    history.embedder  # noqa: B018
                    bar.phase("opening the search index")
                    history.index  # noqa: B018
                bar.phase("reading")
                report = history.import_path(path, format=fmt, kind=kind, sent_from=list(sent_from) or None,
                                             text_field=text_field, columns=roles or None, user_id=user_id,
                                             min_words=min_words, progress=bar, cancel=cancel,
                                             rating_scale=rating_scale)
            finally:
                bar.close()
            click.echo(report.summary())
            for note in report.notes:
                click.echo(f"  note: {note}")
            if report.previously:
                before = ", ".join(f"{v:,} {k}" for k, v in report.previously.items() if v)
                click.echo(f"  before the interruption: {before or 'nothing'}")
            listed = report.rejected if show_rejected else report.rejected[:10]
            for ref, reason in listed:
                click.echo(f"  rejected {ref}: {reason}")
            if len(listed) < len(report.rejected):
                click.echo(f"  ... and {len(report.rejected) - len(listed):,} more (--show-rejected lists them all)")
            if not report.finished:
                click.echo("Stopped. Run the same command again to resume.", err=True)
                raise SystemExit(130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        vault.close()


@click.command(name="search")
@click.argument("query", nargs=-1, required=True)
@click.option("-k", "--top", "k", default=5, show_default=True, help="How many results.")
@click.option("--hybrid", is_flag=True, help="Fuse meaning with keyword (BM25) matching.")
@click.option("--mmr", is_flag=True, help="Diversify the results (maximal marginal relevance).")
@click.option("--lambda", "lambda_", default=0.5, show_default=True, help="With --mmr: 1 = relevance only, 0 = diversity.")
@click.option("--kind", "kinds", multiple=True, help="Only items of this kind (repeatable): email, note, text...")
@click.option("--since", help="Only items from this day on: YYYY-MM-DD, or 30d, 12w, 6m, 1y.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per result.")
@with_vault
def search_cmd(query: tuple[str, ...], k: int, hybrid: bool, mmr: bool, lambda_: float, kinds: tuple[str, ...],
               since: str | None, as_json: bool, vault: Vault) -> None:
    """Search your history by meaning."""
    from .. import index
    from ..history import History, heading

    index.llama_will_not_load()  # this process only embeds and searches: skip the llama.cpp guard

    history = History(vault)
    history.warm_up()  # the model loads while the index is read and decrypted
    hits = history.search(" ".join(query), k=k, kinds=list(kinds) or None, since=since,
                          mode="hybrid" if hybrid else "dense", mmr=mmr, lambda_=lambda_)
    if not hits:
        click.echo("No results." if History(vault).count() else "Your history is empty: add to it with "
                   "`localpers import`.")
    for n, hit in enumerate(hits, 1):
        if as_json:
            click.echo(json.dumps({"id": hit.item_id, "score": hit.score, "kind": hit.kind,
                                   "created": hit.created, "content": hit.content, "metadata": hit.metadata},
                                  ensure_ascii=False))
            continue
        title = heading(hit.metadata)
        click.echo(f"{n}. {hit.score:.3f}  {hit.kind:<6} {_day(hit.created)}  {clip(title, 60)}  [{hit.item_id[:8]}]")
        click.echo(f"   {clip(hit.content, 150)}")


@click.group(name="history")
def history_group() -> None:
    """Browse, delete and re-index your imported history."""


@history_group.command(name="list")
@click.option("--kind", "kinds", multiple=True, help="Only this kind (repeatable).")
@click.option("--since", help="Only items from this day on (YYYY-MM-DD or 30d...).")
@click.option("--limit", default=20, show_default=True)
@with_vault
def list_cmd(kinds: tuple[str, ...], since: str | None, limit: int, vault: Vault) -> None:
    """List items, newest first."""
    from ..history import History, heading

    history = History(vault)
    counts = history.kinds()
    click.echo(f"{sum(counts.values()):,} items" + (f" ({', '.join(f'{n:,} {k}' for k, n in counts.items())})"
                                                    if counts else ""))
    for item in history.items(list(kinds) or None, since=since, limit=limit):
        title = heading(item.metadata) or item.content
        click.echo(f"{item.id}  {item.kind:<6} {_day(item.created)}  {clip(title, 70)}")


@history_group.command(name="show")
@click.argument("item_id")
@with_vault
def show_cmd(item_id: str, vault: Vault) -> None:
    """Show one item in full (an id prefix of 6+ characters is enough)."""
    from ..history import History

    history = History(vault)
    item = history.get(_resolve(vault, item_id))
    click.echo(f"id: {item.id}\nkind: {item.kind}\ndate: {_day(item.created)}\nsource: {item.source.get('ref', '')}")
    for key in ("subject", "title", "to", "thread"):
        if item.metadata.get(key):
            click.echo(f"{key}: {item.metadata[key]}")
    click.echo("")
    click.echo(item.content)


def _resolve(vault: Vault, prefix: str) -> str:
    if len(prefix) < 6:
        raise LocalpersError("give at least 6 characters of the item id")
    found = vault.items.keys("id like ?", [prefix.replace("%", "").replace("_", "") + "%"])
    if not found:
        raise LocalpersError(f"no item with id {prefix!r}; see `localpers history list`")
    if len(found) > 1:
        raise LocalpersError(f"{len(found)} items start with {prefix!r}; give more characters")
    return found[0]


@history_group.command(name="delete")
@click.argument("item_ids", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_vault
def delete_cmd(item_ids: tuple[str, ...], yes: bool, vault: Vault) -> None:
    """Erase items for good: text, embedding, index entry, and every trace in the vault file."""
    from ..history import History

    ids = [_resolve(vault, i) for i in item_ids]
    if not yes:
        click.confirm(f"Erase {len(ids)} item(s) for good?", abort=True)
    n = History(vault).delete_many(ids)
    click.echo(f"Erased {n} item(s).")


@history_group.command(name="reindex")
@click.option("--reembed", is_flag=True, help="Embed every text again (after changing the embedding model).")
@with_vault
def reindex_cmd(reembed: bool, vault: Vault) -> None:
    """Rebuild the search index from the vault."""
    from ..history import History

    bar = Progress("embedding", unit="items")
    try:
        n = History(vault).rebuild_index(reembed=reembed, progress=bar)
    finally:
        bar.close()
    click.echo(f"Index rebuilt: {n:,} items.")


commands = [import_cmd, search_cmd, history_group]
