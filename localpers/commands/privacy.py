"""``localpers privacy``: the disclosure ledger, and minimal disclosures computed on demand."""

from __future__ import annotations

import datetime
import json
import math

import click

from ..errors import LocalpersError
from .options import user_option

DEMO_DECISION = "breast-cancer-demo"



@click.group()
def privacy() -> None:
    """What profile facts were shared, with whom and why; and what a decision needs.

    Before profile facts go into a writing prompt or a recommendation request,
    localpers works out the fewest facts that fix the decision at hand and records
    what it shared in an encrypted ledger in your vault.
    """


@privacy.command()
@user_option
@click.option("--limit", "-n", type=click.IntRange(min=1), default=None, help="Show only the newest N entries.")
@click.option("--steps", is_flag=True, help="Also show each step and its reason.")
@click.option("--json", "as_json", is_flag=True, help="Print entries as JSON lines.")
@click.option("--export", "export_path", type=click.Path(dir_okay=False), default=None,
              help="Write the whole ledger to this file as JSON Lines. The file is PLAINTEXT, outside the vault.")
@click.option("--force", is_flag=True, help="With --export: replace an existing file.")
def ledger(user: str | None, limit: int | None, steps: bool, as_json: bool, export_path: str | None,
           force: bool) -> None:
    """Show the disclosure ledger: what was revealed, to whom, why and when.

    With --export PATH the ledger is written as JSON Lines to PATH. That file is
    plaintext (readable by anyone with access to it); keep it somewhere safe.
    """
    from ..cli import open_vault
    from ..disclosure import describe_entry, export_ledger, ledger_entries

    with open_vault(user) as vault:
        if export_path:
            n = export_ledger(vault, export_path, overwrite=force)
            click.echo(f"Wrote {n} ledger entr{'y' if n == 1 else 'ies'} to {export_path} (plaintext).")
            return
        entries = ledger_entries(vault, limit=limit)
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry.to_dict(), ensure_ascii=False))
        return
    if not entries:
        click.echo("The ledger is empty: no profile facts have been shared.")
        return
    for entry in entries:
        day = datetime.datetime.fromtimestamp(entry.time, datetime.timezone.utc).strftime("%Y-%m-%d")
        click.echo(f"#{entry.id}  {day}")
        for line in describe_entry(entry):  # the same sentences as the app's detail view
            click.echo(f"    {line}")
        if steps:
            for n, step in enumerate(entry.steps, 1):
                click.echo(f"    {n}. {step.get('feature')}: {step.get('reason')}")


@privacy.command()
def decisions() -> None:
    """List the decisions `privacy decide` knows."""
    from ..disclosure import DECISIONS

    click.echo(f"{DEMO_DECISION:<20} demo on scikit-learn's bundled breast-cancer data (30 features): "
               "benign or malignant? (--row picks a held-out patient)")
    for name, rule in DECISIONS.items():
        facts = ", ".join(f.name for f in rule.facts)
        click.echo(f"{name:<20} for {rule.purpose}: {rule.question} (uses {facts})")


def _parse_costs(values: tuple[str, ...]) -> dict[str, float]:
    costs = {}
    for item in values:
        name, sep, number = item.partition("=")
        try:
            if not sep:
                raise ValueError
            costs[name.strip()] = math.inf if number.strip() in ("inf", "never") else float(number)
        except ValueError:
            raise LocalpersError(f"--cost wants NAME=NUMBER (or NAME=never), got {item!r}") from None
    return costs


@privacy.command()
@click.argument("name", required=False)
@user_option
@click.option("--delta", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01, show_default=True,
              help="Stop once the decision is fixed with probability >= 1 - delta.")
@click.option("--public", multiple=True, help="A feature that is always known (repeatable).")
@click.option("--cost", "costs", multiple=True,
              help="Sensitivity of a feature, NAME=NUMBER or NAME=never (repeatable).")
@click.option("--row", type=click.IntRange(min=0), default=0, show_default=True,
              help=f"{DEMO_DECISION}: which held-out patient (0-113).")
@click.option("--model", "model_kind", type=click.Choice(["logistic", "gbm"]), default="logistic", show_default=True,
              help=f"{DEMO_DECISION}: logistic regression (closed form) or gradient boosting (Monte-Carlo).")
@click.option("--record", is_flag=True,
              help="Profile decisions: write the result to the ledger (default: preview only).")
@click.option("--recipient", default="preview", show_default=True, help="Who the facts are for (with --record).")
@click.option("--json", "as_json", is_flag=True, help="Print the disclosure as JSON.")
def decide(name: str | None, user: str | None, delta: float, public: tuple[str, ...], costs: tuple[str, ...],
           row: int, model_kind: str, record: bool, recipient: str, as_json: bool) -> None:
    """Compute a minimal disclosure for the decision NAME and show each step.

    NAME is a profile decision (writing-tone, recommendation-era), which uses your
    profile facts, or breast-cancer-demo. Run `localpers privacy decisions` for the list.
    """
    from ..disclosure import DECISIONS

    if name is None:
        raise LocalpersError(f"name a decision: {DEMO_DECISION}, {', '.join(DECISIONS)}")
    cost_map = _parse_costs(costs)
    if name == DEMO_DECISION:
        disclosure, full, truth = _breast_cancer_demo(row, model_kind, delta, public, cost_map)
        if as_json:
            click.echo(json.dumps({**disclosure.to_dict(), "full_decision": full, "diagnosis": truth}))
            return
        click.echo(f"Patient {row} of the held-out set ({model_kind}, {disclosure.method}).")
        click.echo(disclosure.explain())
        click.echo(f"With all 30 features the model says: {full}. Recorded diagnosis: {truth}.")
        return
    if name not in DECISIONS:
        raise LocalpersError(f"unknown decision {name!r}; known: {DEMO_DECISION}, {', '.join(DECISIONS)}")
    from ..cli import open_vault
    from ..disclosure import choose_profile_facts

    rule = DECISIONS[name]
    with open_vault(user) as vault:
        chosen = choose_profile_facts(vault, rule.purpose, decision=rule, recipient=recipient, public=public,
                                      costs=cost_map, delta=delta, record=record)
    if as_json:
        click.echo(json.dumps({**chosen.disclosure.to_dict(), "used": chosen.used, "withheld_facts": chosen.withheld,
                               "reasons": chosen.reasons, "ledger_id": chosen.ledger_id}, default=str))
        return
    click.echo(chosen.disclosure.explain())
    click.echo("")
    click.echo(chosen.explain())
    click.echo(chosen.summary())
    if chosen.ledger_id is not None:
        click.echo(f"Recorded as ledger entry #{chosen.ledger_id}.")


def _breast_cancer_demo(row: int, model_kind: str, delta: float, public: tuple[str, ...], costs: dict[str, float]):
    """Fit on 80% of the bundled breast-cancer data and disclose for one held-out patient."""
    # deferred: scikit-learn takes seconds to import; only this demo needs it
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..disclosure import DisclosureConfig, GaussianPrior, full_decision, minimal_disclosure

    data = load_breast_cancer()
    names = [str(n) for n in data.feature_names]
    X_train, X_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.2, random_state=0,
                                                        stratify=data.target)
    if row >= len(X_test):
        raise LocalpersError(f"--row must be below {len(X_test)}")
    if model_kind == "logistic":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X_train, y_train)
    else:
        model = GradientBoostingClassifier(random_state=0).fit(X_train, y_train)
    prior = GaussianPrior.fit(X_train, names=names)
    labels = [str(n) for n in data.target_names]
    config = DisclosureConfig(delta=delta, public=list(public), costs=costs, labels=labels)
    x = dict(zip(names, X_test[row]))
    return (minimal_disclosure(model, prior, x, config), full_decision(model, prior, x, config),
            labels[int(y_test[row])])


commands = [privacy]
