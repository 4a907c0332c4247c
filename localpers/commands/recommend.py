"""``localpers catalog``, ``recommend``, ``feedback`` and ``profile``: recommendations from a local catalog.

Examples::

    localpers catalog import films.jsonl --name films
    localpers catalog import --demo
    localpers catalog list
    localpers catalog remove films
    localpers catalog model item2item.npz --catalog films
    localpers recommend -n 5 --kind film --explain
    localpers feedback nosferatu like
    localpers feedback metropolis rating --value 4
    localpers profile show
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from ..errors import LocalpersError
from .progress import Progress
from .options import user_option

FEEDBACK = ["like", "dislike", "not-interested", "rating", "read", "click"]


def _catalog_name(path: Path) -> str:
    name = re.sub(r"[^a-z0-9_.-]+", "-", path.stem.lower()).strip("-.") or "default"
    return name[:60]


@click.group(name="catalog")
def catalog_group() -> None:
    """Import, list and remove catalogs of things to recommend.

    A catalog is public data (titles, descriptions, tags), so it is stored unencrypted
    under the data directory; what you do with its items stays in your vault.
    """


@catalog_group.command(name="import")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="Catalog name (default: the file name).")
@click.option("--kind", default="", help="Kind for rows that have none: book, film, article, product...")
@click.option("--item-model", type=click.Path(dir_okay=False, path_type=Path),
              help="An item-to-item model shipped with the catalog (.npz or neighbour-list .jsonl).")
@click.option("--demo", is_flag=True, help="Import the bundled demo catalog (public-domain books and films).")
@click.option("--column", "columns", multiple=True, metavar="ROLE=NAME",
              help="Which field plays which role (id, title, kind, text, tags), e.g. id=ean.")
@click.option("--vectors", type=click.Path(dir_okay=False, path_type=Path),
              help="Precomputed item embeddings shipped with the catalog (.npz with ids, vectors, model).")
def catalog_import(path: Path | None, name: str | None, kind: str, item_model: Path | None, demo: bool,
                   columns: tuple[str, ...], vectors: Path | None) -> None:
    """Import items from a JSONL, JSON or CSV file (rows need id and title).

    Broken rows are listed and skipped. Run the command again after an interruption:
    what was imported stays, and the embedding picks up where it stopped.
    """
    from .. import index
    from ..catalog import DEMO_CATALOG, Catalog, check_catalog_file

    index.llama_will_not_load()  # this process only embeds: skip the llama.cpp guard
    if demo:
        path, name = DEMO_CATALOG, name or "demo"
    if path is None:
        raise LocalpersError("give a file to import (JSONL, JSON or CSV), or --demo for the bundled catalog")
    check_catalog_file(path)  # before the catalog's folder is made
    # Closed with the command, error or not: a new catalog left without items is removed again.
    catalog = click.get_current_context().with_resource(Catalog.importing(name or _catalog_name(path)))
    bar = Progress(catalog.name, unit="items")
    try:
        from ..embed import Embedder

        embedder = None
        if vectors is None:  # shipped vectors need no embedding model
            bar.phase("loading the embedding model")
            embedder = Embedder.shared(catalog.embedding_model())
        bar.phase(f"reading {path.name}")  # the first embedding count closes this phase
        report = catalog.import_file(path, default_kind=kind, embedder=embedder, columns=_roles(columns),
                                     vectors=vectors, progress=lambda done, total: bar(done, total, "embedded"))
    except KeyboardInterrupt:
        bar.close()
        click.echo(f"\nStopped; {len(catalog) - catalog.pending()} of {len(catalog)} items are embedded. "
                   f"Run the same command again to finish.", err=True)
        raise
    finally:
        bar.close()
    for bad in report.skipped[:20]:
        click.echo(f"skipped {bad}", err=True)
    if len(report.skipped) > 20:
        click.echo(f"... and {len(report.skipped) - 20} more broken rows", err=True)
    if not len(catalog):  # the catalog was new: it is removed again, and this is an error
        raise LocalpersError(f"no item could be imported from {path.name}: fix the rows listed above" if report.skipped
                             else f"{path.name} has no items; a catalog needs at least one row with an id and a title")
    click.echo(report.summary())
    if item_model is not None:
        model = catalog.load_item_model(item_model)
        click.echo(f"item model installed: {model.info.get('matched', 0)} of {len(model.ids)} items match the catalog")


@catalog_group.command(name="model")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--catalog", "catalog_name", help="Which catalog (default: the only one).")
def catalog_model(path: Path, catalog_name: str | None) -> None:
    """Install an item-to-item model (collaborative signal computed elsewhere) into a catalog."""
    from ..catalog import Catalog

    catalog = Catalog.find(catalog_name)
    model = catalog.load_item_model(path)
    click.echo(f"item model installed in {catalog.name!r}: {model.info.get('matched', 0)} of {len(model.ids)} "
               f"items match the catalog")


@catalog_group.command(name="build-model")
@click.argument("interactions", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("item2item.npz"),
              show_default=True, help="Where to write the model (.npz, or neighbour-list .jsonl).")
@click.option("--method", type=click.Choice(["auto", "ease", "knn"]), default="auto", show_default=True,
              help="EASE where it fits the memory budget, item-kNN beyond (auto), or one of them.")
@click.option("--top-k", type=click.IntRange(1, 100_000),
              help="Neighbours kept per item (default: what a device keeps, 200 or more on small catalogs).")
@click.option("--memory-gb", default=4.0, show_default=True, type=click.FloatRange(0.1, 1024),
              help="Memory budget of the fitting step.")
@click.option("--min-value", type=float, help="Only rows whose value (rating) is at least this count.")
@click.option("--column", "columns", multiple=True, metavar="ROLE=NAME",
              help="Which column plays which role (user, item, value), e.g. item=asin.")
def catalog_build_model(interactions: Path, output: Path, method: str, top_k: int | None, memory_gb: float,
                        min_value: float | None, columns: tuple[str, ...]) -> None:
    """Build the item-to-item model from aggregate interactions (a publisher's CSV of user, item rows).

    Reads the file in chunks, reports broken rows and carries on, and writes the sparse
    top-k neighbour model that `localpers catalog model` installs.
    """
    from ..itemmodel import build_item_model, iter_neighbours

    def progress(stage: str, done: int, total: int) -> None:
        click.echo(f"{stage}: {done:,}" + (f" of {total:,}" if total else " rows"), err=True)

    report = build_item_model(interactions, columns=_roles(columns), min_value=min_value, method=method,
                              top_k=top_k, budget_gb=memory_gb, progress=progress)
    for bad in report.broken_rows:
        click.echo(f"skipped {bad}", err=True)
    if report.broken > len(report.broken_rows):
        click.echo(f"... and {report.broken - len(report.broken_rows):,} more broken rows", err=True)
    if output.suffix.lower() in (".jsonl", ".ndjson"):
        tmp = output.with_name(output.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for row in iter_neighbours(report.model):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(output)
    else:
        report.model.save(output)
    click.echo(report.summary())
    click.echo(f"written to {output}; install it with: localpers catalog model {output}")


def _roles(specs: tuple[str, ...]) -> dict[str, str] | None:
    """``("item=asin", ...)`` -> ``{"item": "asin"}`` (the --column option)."""
    roles = {}
    for spec in specs:
        role, sep, name = spec.partition("=")
        if not sep or not role.strip() or not name.strip():
            raise click.BadParameter(f"{spec!r}: use ROLE=NAME, e.g. item=asin", param_hint="--column")
        roles[role.strip().lower()] = name.strip()
    return roles or None


@catalog_group.command(name="list")
def catalog_list() -> None:
    """List the catalogs on this machine."""
    from ..catalog import Catalog

    names = Catalog.names()
    if not names:
        click.echo("No catalogs yet. Import one: localpers catalog import FILE (or --demo)")
        return
    for name in names:
        catalog = Catalog(name)
        kinds = ", ".join(f"{n} {k or 'item'}{'s' if n != 1 else ''}" for k, n in catalog.kinds().items())
        extra = []
        if catalog.pending():
            extra.append(f"{catalog.pending()} not embedded yet")
        if catalog.item_model is not None:
            extra.append("item model")
        click.echo(f"{name:<20} {len(catalog):>6} items  {kinds}" + (f"  [{'; '.join(extra)}]" if extra else ""))


@catalog_group.command(name="remove")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Remove without asking.")
def catalog_remove(name: str, yes: bool) -> None:
    """Remove a catalog (its items and their embeddings) from this machine.

    Your likes and ratings of its items stay in your vault; importing the catalog
    again brings them back into play.
    """
    from ..catalog import Catalog

    catalog = Catalog.find(name)
    if not yes:
        click.confirm(f"Remove the catalog {name!r} ({len(catalog)} item{'s' if len(catalog) != 1 else ''})?", abort=True)
    catalog.delete()
    click.echo(f"Removed the catalog {name!r}.")


def _open_catalog(name: str | None, vault: object) -> object:
    """The catalog to use: ``name`` (remembered for next time), else the user's earlier pick.

    The demo vault gets the bundled demo catalog (and its ratings) when there is none.
    """
    from ..catalog import Catalog

    if name is None and not Catalog.names() and getattr(vault, "is_demo", False):
        from ..demo import seed_demo_feedback
        from ..recommend import read_events

        catalog = Catalog.demo()
        if not read_events(vault, catalog.name):
            seed_demo_feedback(vault, catalog)
        return catalog
    catalog = Catalog.find(name, chosen=Catalog.remembered(vault))
    if name is not None and len(Catalog.names()) > 1 and Catalog.remembered(vault) != name:
        Catalog.remember(vault, name)
    return catalog


@click.command(name="recommend")
@user_option
@click.option("-n", "--count", default=10, show_default=True, type=click.IntRange(1, 200), help="How many items.")
@click.option("--kind", multiple=True, help="Only items of this kind (repeat for several).")
@click.option("--tag", multiple=True, help="Only items with this tag (repeat for several).")
@click.option("--catalog", "catalog_name", help="Which catalog (default: the only one, or the one you chose last).")
@click.option("--interests", help="What you like, for this list only (e.g. 'sea stories, detectives').")
@click.option("--explain", is_flag=True, help="Show what each score is made of.")
@click.option("--llm", is_flag=True, help="Phrase the reasons with the local LLM (the writer model).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def recommend_cmd(count: int, kind: tuple[str, ...], tag: tuple[str, ...], catalog_name: str | None,
                  interests: str | None, explain: bool, llm: bool, as_json: bool, user: str | None) -> None:
    """Recommend items from a catalog, each with the reason it is there.

    Computed on this machine from your encrypted interactions; nothing is sent anywhere.
    """
    from .. import index
    from ..cli import open_vault
    from ..recommend import Recommender

    if not llm:
        index.llama_will_not_load()  # no local LLM in this process: skip the llama.cpp guard
    with open_vault(user) as vault:
        catalog = _open_catalog(catalog_name, vault)
        if kind:
            catalog.check_kinds(kind)
        engine = None
        if llm:
            from ..llm import Engine
            from ..paths import Config

            engine = Engine.shared(Config.load().writer_model)
        recs = Recommender(catalog).recommend(vault, count, kinds=kind or None, tags=tag or None,
                                              interests=interests, engine=engine)
    if not recs:
        click.echo("Nothing to recommend: the catalog is empty, or every matching item was already seen.")
        return
    for n, rec in enumerate(recs, 1):
        if as_json:
            click.echo(json.dumps(rec.to_dict(), ensure_ascii=False))
            continue
        kind_label = f" [{rec.item.kind}]" if rec.item.kind else ""
        click.echo(f"{n:>2}. {rec.item.label()}{kind_label}  ({rec.item.id})")
        click.echo(f"    {rec.reason}")
        if explain:
            parts = " ".join(f"{v:+.2f} {k}" for k, v in rec.parts.items())
            click.echo(f"    score {rec.score:+.2f} = {parts or 'no signals yet'}")
    disclosure = getattr(recs, "disclosure", None)
    if disclosure is not None and not as_json:
        click.echo(f"\nProfile facts: {disclosure.summary()}")


@click.command(name="feedback")
@user_option
@click.argument("item_id")
@click.argument("signal", type=click.Choice(FEEDBACK, case_sensitive=False))
@click.option("--value", type=float, help="Stars for a rating, 0.5 to 5 (half stars allowed).")
@click.option("--catalog", "catalog_name", help="Which catalog (default: the only one).")
def feedback_cmd(item_id: str, signal: str, value: float | None, catalog_name: str | None, user: str | None) -> None:
    """Tell the recommender what you think of an item: like, dislike, not-interested, rating (--value 0.5-5)."""
    from ..cli import open_vault
    from ..recommend import record_feedback

    with open_vault(user) as vault:
        catalog = _open_catalog(catalog_name, vault)
        record_feedback(vault, catalog, item_id, signal, value)
        title = catalog.get(item_id).title
    shown = f"{signal} {value:g}" if value is not None else signal
    click.echo(f"Recorded: {shown} for {title}. The next list takes it into account.")


@click.group(name="profile")
def profile_group() -> None:
    """Your taste profile: a short summary built from your history, stored encrypted, editable."""


@profile_group.command(name="show")
@user_option
def profile_show(user: str | None) -> None:
    """Print the stored profile and your stated interests."""
    from ..cli import open_vault
    from ..profile import get_interests, profile_info

    with open_vault(user) as vault:
        info, interests = profile_info(vault), get_interests(vault)
    if not info["text"] and not interests:
        click.echo("No profile yet: run `localpers profile build`, or state interests with `localpers profile interests`.")
        return
    if info["text"]:
        click.echo(info["text"])
        click.echo(f"({'edited by you' if info['edited'] else 'generated: ' + info['source']})", err=True)
    if interests:
        click.echo(f"Stated interests: {', '.join(interests)}")


@profile_group.command(name="build")
@user_option
@click.option("--llm", is_flag=True, help="Rephrase it as prose with the local LLM (kept only if it keeps your facts).")
@click.option("--force", is_flag=True, help="Replace a profile you edited.")
def profile_build(llm: bool, force: bool, user: str | None) -> None:
    """Generate the profile from your interactions and history (locally) and store it."""
    from ..cli import open_vault
    from ..profile import profile_info, update_profile

    engine = None
    if llm:
        from ..llm import Engine
        from ..paths import Config

        engine = Engine.shared(Config.load().writer_model)
    with open_vault(user) as vault:
        edited = profile_info(vault)["edited"]
        text = update_profile(vault, engine=engine, force=force)
    if edited and not force:
        click.echo("Your edited profile is kept (use --force to replace it):", err=True)
    click.echo(text or "Nothing to build from yet: give feedback on some items or import your history.")


@profile_group.command(name="set")
@user_option
@click.argument("text")
def profile_set(text: str, user: str | None) -> None:
    """Replace the profile with your own words ('-' reads them from standard input)."""
    from ..cli import open_vault
    from ..profile import set_profile

    if text == "-":
        text = sys.stdin.read()
    with open_vault(user) as vault:
        set_profile(vault, text)
    click.echo("Profile saved (encrypted). `localpers profile build --force` regenerates it.")


@profile_group.command(name="interests")
@user_option
@click.argument("interests")
def profile_interests(interests: str, user: str | None) -> None:
    """State what you like, comma-separated: used for recommendations from the first list on."""
    from ..cli import open_vault
    from ..profile import set_interests

    with open_vault(user) as vault:
        stored = set_interests(vault, interests)
    click.echo(f"Interests saved: {', '.join(stored) if stored else '(none)'}")


commands = [catalog_group, recommend_cmd, feedback_cmd, profile_group]
