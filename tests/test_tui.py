"""Pilot tests of the terminal app against the real engine, the real models and a real vault in a temp dir.

Every screen and main flow: unlock / create (with a wrong passphrase), the demo
profile, recommendations changing with feedback, history search / open / delete /
import, privacy export and erase, the command palette, F1 help, themes. Writing and
training have their own file (test_tui_models.py).
"""

from __future__ import annotations

import pytest

from localpers.tui import LocalpersApp
from localpers.tui.screens.help import HelpScreen, help_sections
from tui_support import copy_demo_home, notifications, screen_text, unlocked, wait_for


@pytest.fixture
def demo_home(tmp_path, monkeypatch):
    home = copy_demo_home(tmp_path)
    monkeypatch.setenv("LOCALPERS_HOME", str(home))
    return home


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LOCALPERS_HOME", str(home))
    return home


# ---------------------------------------------------------------------- unlock


async def test_create_user_lock_and_unlock_again(empty_home):
    from localpers.vault import Vault

    app = LocalpersApp(home=empty_home, kdf_seconds=0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert screen.creating, "with no users yet, the form starts on 'New user'"
        await pilot.click("#user")
        await pilot.press(*"ada", "tab", *"short")
        assert "too short" in str(screen.query_one("#strength").render())
        await pilot.press("tab", *"short", "enter")
        await pilot.pause()
        assert any("at least 8" in m for m in notifications(app)), notifications(app)
        assert app.session is None

        passphrase = "river alder meadow swale"
        screen.query_one("#passphrase").value = passphrase
        screen.query_one("#confirm").value = passphrase + "x"
        await pilot.press("enter")
        await pilot.pause()
        assert any("differ" in m for m in notifications(app))
        assert app.session is None

        screen.query_one("#confirm").value = passphrase
        await pilot.click("#submit")
        await unlocked(pilot)
        assert app.current_mode == "write"
        assert app.vault.user == "ada" and not app.vault.is_demo
        assert "ada" in screen_text(app).splitlines()[0]
        assert "DEMO" not in screen_text(app).splitlines()[0]

        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: app.current_mode == "unlock" and app.session is None)
        unlock = app.screen
        await wait_for(pilot, lambda: not unlock.query_one("#unlock-busy").display, timeout=60)
        assert "Vault closed" in str(unlock.query_one("#unlock-status").render())
        assert app.focused is unlock.query_one("#passphrase"), "after locking, typing goes to the form"
        await pilot.press(*"typed")
        assert unlock.query_one("#passphrase").value == "typed"
        unlock.query_one("#passphrase").value = ""
        options = unlock.query_one("#users")
        assert [options.get_option_at_index(i).id for i in range(options.option_count)][1:] == ["ada"]

        # A wrong passphrase: a clear message, nothing opened.
        unlock.set_creating(False)
        unlock.query_one("#user").value = "ada"
        unlock.query_one("#passphrase").value = "not the passphrase"
        unlock.query_one("#passphrase").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("Wrong passphrase" in m for m in notifications(app)),
                       message=lambda: notifications(app))
        assert app.session is None and unlock.query_one("#passphrase").value == ""

        unlock.query_one("#passphrase").value = passphrase
        await pilot.press("enter")
        await unlocked(pilot)
        assert app.vault.user == "ada"
    assert Vault.users(empty_home / "users") == ["ada"]


async def test_demo_profile_opens_without_passphrase_and_is_marked(demo_home):
    app = LocalpersApp(home=demo_home)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.current_mode == "unlock"
        await pilot.press("ctrl+o")
        await unlocked(pilot)
        assert app.vault.is_demo
        top = screen_text(app).splitlines()[0]
        assert "DEMO" in top and "F6 Privacy" in top, top
    wide = LocalpersApp(home=demo_home, demo=True)
    async with wide.run_test(size=(120, 40)) as pilot:
        await unlocked(pilot)
        assert "DEMO · synthetic data" in screen_text(wide).splitlines()[0]


async def test_user_option_prefills_the_name(demo_home):
    app = LocalpersApp(home=demo_home, user="zoe")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.screen.query_one("#user").value == "zoe"
        assert app.screen.focused.id == "passphrase"
        # zoe has no vault: opening says so and how to create one.
        app.screen.query_one("#passphrase").value = "whatever passphrase"
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("no vault for user 'zoe'" in m for m in notifications(app)))
        assert app.session is None


async def test_a_new_users_first_screens_each_name_the_next_step(demo_home):
    """A brand-new vault: every empty screen says what to do next and which key does it."""
    from localpers.vault import Vault

    Vault.create("ada", "river alder meadow swale", home=demo_home / "users", kdf_seconds=0).close()
    app = LocalpersApp(home=demo_home)
    async with app.run_test(size=(100, 32)) as pilot:
        await _unlock_as(pilot, "ada", "river alder meadow swale")
        screen = app.screen
        draft = screen.query_one("#draft")
        await wait_for(pilot, lambda: "no texts yet" in str(draft.placeholder))
        text = screen_text(app)
        assert "DEMO" not in text and "Nora" not in text, "nothing of the demo shows in a user's own vault"
        assert "no texts yet" in text, "the guide shows in the empty draft box"
        assert "F4 History, then i: import sent mail" in draft.placeholder
        assert "F5 Adapter, then t: train your adapter" in draft.placeholder

        await pilot.press("f4")
        screen = app.screen
        empty = screen.query_one("#history-empty")
        await wait_for(pilot, lambda: empty.display and "0 texts" in str(screen.query_one("#history-status").render()))
        guide = str(empty.render())
        assert "Your history is empty" in guide and "Press i to import" in guide
        assert "localpers import ~/Mail/sent.mbox" in guide and "--user ada" in guide
        await wait_for(pilot, lambda: "Your history is empty" in screen_text(app), timeout=5)

        await pilot.press("f5")
        data = app.screen.query_one("#adapter-data")
        await wait_for(pilot, lambda: "more texts you wrote" in str(data.render()), timeout=60)
        needed = app.session.readiness()[1]
        assert needed > 0 and f"{needed} more texts you wrote" in str(data.render())
        assert "F4 History (press i)" in str(data.render())
        assert app.screen.query_one("#train").disabled

        await pilot.press("f3")
        screen = app.screen
        await wait_for(pilot, lambda: screen.recs, timeout=60)
        assert "bundled demo catalog" in str(screen.query_one("#rec-profile").render())
        assert "localpers catalog import FILE" in str(screen.query_one("#rec-profile").render())

        # Once texts arrive, the History guide goes away.
        app.session.history().add_texts(["Dear Tom, can we move our meeting to Thursday? Ada"], kind="email")
        await pilot.press("f4")
        app.screen.load()
        await wait_for(pilot, lambda: not app.screen.query_one("#history-empty").display)


async def test_the_demo_says_it_is_not_your_data(demo_home):
    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await unlocked(pilot)
        draft = app.screen.query_one("#draft")
        await wait_for(pilot, lambda: "Nora Quill, a fictional writer" in str(draft.placeholder))
        assert "Ctrl+L, then Ctrl+N" in screen_text(app)
        await pilot.press("f4")
        status = app.screen.query_one("#history-status")
        await wait_for(pilot, lambda: "demo: synthetic texts" in str(status.render()), timeout=60)
        assert not app.screen.query_one("#history-empty").display


async def test_copy_says_honestly_whether_it_copied(demo_home, tmp_path, monkeypatch):
    """Ctrl+O uses a clipboard tool when there is one; without one it says the text may not be copied."""
    import shutil

    cat = shutil.which("cat")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))  # no clipboard tool on the path
    monkeypatch.setenv("DISPLAY", ":0")
    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await unlocked(pilot)
        draft = app.screen.query_one("#draft")
        draft.text = "Dear Tom, Thursday works. Nora"
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: any("Sent 30 characters" in m for m in notifications(app)))
        assert not any(m.startswith("Copied") for m in notifications(app))
        assert app.clipboard == draft.text

        # xclip is not installed here: a stand-in with its command line keeps what it is given.
        received = tmp_path / "received"
        tool = bin_dir / "xclip"
        tool.write_text(f"#!/bin/sh\n{cat} > {received}\n")
        tool.chmod(0o755)
        draft.text = "Dear Tom, Friday works too."
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: any("Copied 27 characters to the clipboard (with xclip)" in m
                                          for m in notifications(app)))
        assert received.read_text() == "Dear Tom, Friday works too."


# ---------------------------------------------------------------------- recommend


def _rec_ids(screen) -> list[str]:
    return [rec.item.id for rec in screen.recs]


async def test_feedback_changes_the_next_list(demo_home):
    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await unlocked(pilot)
        await pilot.press("f3")
        screen = app.screen
        await wait_for(pilot, lambda: screen.recs, timeout=60)
        first = _rec_ids(screen)
        assert all(rec.reason for rec in screen.recs), "every item says why it is here"
        interactions = app.vault.interactions.count()

        await pilot.press("l")  # like the top item
        await wait_for(pilot, lambda: _rec_ids(screen) != first, timeout=30)
        second = _rec_ids(screen)
        assert first[0] not in second, "a liked item leaves the list"
        assert app.vault.interactions.count() == interactions + 1

        await pilot.press("down", "n")  # not interested in the second item
        await wait_for(pilot, lambda: _rec_ids(screen) != second, timeout=30)
        third = _rec_ids(screen)
        assert second[1] not in third
        signals = [row["signal"] for row in app.vault.interactions.rows(order_by="id")]
        assert signals[-2:] == ["like", "not_interested"]
        assert any("Liked" in m for m in notifications(app))


async def test_recommend_filters(demo_home):
    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await unlocked(pilot)
        await pilot.press("f3")
        screen = app.screen
        await wait_for(pilot, lambda: screen.recs, timeout=60)
        screen.query_one("#rec-kind").value = "film"
        await wait_for(pilot, lambda: screen.recs and all(r.item.kind == "film" for r in screen.recs))
        await pilot.press("slash", *"horror", "enter")
        await wait_for(pilot, lambda: screen.recs and all("horror" in [t.lower() for t in r.item.tags]
                                                          for r in screen.recs))
        assert all(r.item.kind == "film" for r in screen.recs)


async def _unlock_as(pilot, user: str, passphrase: str) -> None:
    screen = pilot.app.screen
    screen.set_creating(False)
    screen.query_one("#user").value = user
    screen.query_one("#passphrase").value = passphrase
    screen.query_one("#passphrase").focus()
    await pilot.press("enter")
    await unlocked(pilot)


async def test_recommend_lets_the_user_pick_a_catalog_and_remembers_it(demo_home, tmp_path):
    import json

    from localpers.catalog import Catalog
    from localpers.vault import Vault

    # A second catalog next to the demo one: recommending cannot guess which the user means.
    books = tmp_path / "books.jsonl"
    books.write_text("\n".join(json.dumps({"id": f"b{i}", "title": f"Lighthouse Keeper's Log {i}", "kind": "book",
                                            "description": f"Volume {i} of a keeper's notes on storms and ships."})
                               for i in range(8)), encoding="utf-8")
    Catalog("books", home=demo_home).import_file(books)
    assert Catalog.names(demo_home) == ["books", "demo"]
    Vault.create("ada", "river alder meadow swale", home=demo_home / "users", kdf_seconds=0).close()

    app = LocalpersApp(home=demo_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await _unlock_as(pilot, "ada", "river alder meadow swale")
        await pilot.press("f3")
        screen = app.screen
        detail = screen.query_one("#rec-detail")
        await wait_for(pilot, lambda: "Choose the one" in str(detail.render()), timeout=60)
        assert "books, demo" in str(detail.render())
        assert not any("failed" in m for m in notifications(app)), notifications(app)
        choice = screen.query_one("#rec-catalog")
        assert app.focused is choice, "the catalog choice has the focus"

        choice.value = "books"
        await wait_for(pilot, lambda: screen.recs, timeout=60)
        assert {rec.item.id for rec in screen.recs} <= {f"b{i}" for i in range(8)}
        assert "Lighthouse Keeper" in screen_text(app)

    # Unlocked again, the choice is remembered: the list comes straight from the books catalog.
    app = LocalpersApp(home=demo_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await _unlock_as(pilot, "ada", "river alder meadow swale")
        await pilot.press("f3")
        screen = app.screen
        await wait_for(pilot, lambda: screen.recs, timeout=60)
        assert screen.recs[0].item.id.startswith("b")
        assert screen.query_one("#rec-catalog").value == "books"

        # Switching to the demo catalog works from the same box.
        screen.query_one("#rec-catalog").value = "demo"
        await wait_for(pilot, lambda: screen.recs and not screen.recs[0].item.id.startswith("b"), timeout=60)
    with Vault.open("ada", "river alder meadow swale", home=demo_home / "users") as vault:
        assert Catalog.remembered(vault) == "demo"  # one choice for the app and `localpers recommend`


# ---------------------------------------------------------------------- history


def _history_titles(screen) -> list[str]:
    return [row["title"] for row in screen.rows.values()]


async def test_history_search_open_and_delete(demo_home):
    from localpers.history import History

    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await unlocked(pilot)
        await pilot.press("f4")
        screen = app.screen
        await wait_for(pilot, lambda: len(screen.rows) == 61)

        await pilot.press("slash", *"new brake pads for the bike", "enter")
        await wait_for(pilot, lambda: "Searching" not in str(screen.query_one("#history-status").render())
                       and len(screen.rows) < 61, timeout=60)
        assert _history_titles(screen)[0] == "Bike maintenance", _history_titles(screen)[:3]

        screen.query_one("#history-mode").value = "keyword"
        await wait_for(pilot, lambda: "by keyword" in str(screen.query_one("#history-status").render()))
        assert "Bike maintenance" in _history_titles(screen)

        await pilot.press("enter")  # open the selected item
        await wait_for(pilot, lambda: app.screen is not screen)
        assert "Brake pads" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)

        target = screen.selected_id
        title = screen.rows[target]["title"]
        await pilot.press("delete")
        await wait_for(pilot, lambda: app.screen is not screen)
        await pilot.click("#yes")
        await wait_for(pilot, lambda: target not in screen.rows, timeout=30)
        assert any(f"Deleted {title!r}" in m for m in notifications(app))
        history = History(app.vault)
        assert history.get(target) is None
        assert all(hit.item_id != target for hit in history.search("bike brake pads", k=10))

        await pilot.press("escape")  # back to the whole list
        await wait_for(pilot, lambda: len(screen.rows) == 60)
    # Truly erased: the text is nowhere in the vault's files.
    for path in (demo_home / "users" / "demo").iterdir():
        assert b"Brake pads" not in path.read_bytes()


async def test_history_import_shows_progress(demo_home, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    for n in range(12):
        (notes / f"note{n:02}.md").write_text(f"Garden journal day {n}: watered the beans, tied in the roses "
                                              f"and counted {n + 3} bumblebees on the lavender.\n")
    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await unlocked(pilot)
        await pilot.press("f4")
        screen = app.screen
        await wait_for(pilot, lambda: len(screen.rows) == 61)
        seen_progress = []
        original = screen._progress

        def spy(done, total, message):
            seen_progress.append((done, total))
            original(done, total, message)

        screen._progress = spy
        await pilot.press("i")
        await wait_for(pilot, lambda: app.screen is not screen)
        app.screen.query_one("#path").value = str(notes)
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(screen.rows) == 73, timeout=120)
        assert seen_progress and seen_progress[-1][0] == seen_progress[-1][1] == 12
        assert screen.query_one("#import-row").has_class("-hidden")
        assert any("Import finished" in m and "12 added" in m for m in notifications(app)), notifications(app)


# ---------------------------------------------------------------------- privacy


async def test_privacy_shows_counts_exports_and_erases(demo_home, tmp_path):
    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await unlocked(pilot)
        await pilot.press("f6")
        screen = app.screen
        await wait_for(pilot, lambda: "46" in screen_text(app) and "email" in screen_text(app))
        text = screen_text(app)
        assert "Disclosure ledger" in text and "Nothing has been disclosed yet" in text

        backup = tmp_path / "demo.backup"
        await pilot.press("b")
        await wait_for(pilot, lambda: app.screen is not screen)
        app.screen.query_one("#path").value = str(backup)
        await pilot.press("enter")
        await wait_for(pilot, lambda: backup.exists() and any("backup written" in m for m in notifications(app)))
        assert b"Riverside" not in backup.read_bytes(), "the backup is encrypted"

        export = tmp_path / "demo.jsonl"
        await pilot.press("e")
        await wait_for(pilot, lambda: app.screen is not screen)
        app.screen.query_one("#path").value = str(export)
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("Exported" in m for m in notifications(app)))
        assert "Riverside planting plan" in export.read_text()

        await pilot.press("x")
        await wait_for(pilot, lambda: app.screen is not screen)
        await pilot.press(*"dem", "enter")  # not the name: refused
        await pilot.pause()
        assert any("exactly" in m for m in notifications(app))
        await pilot.press("o", "enter")
        await wait_for(pilot, lambda: app.current_mode == "unlock" and app.session is None, timeout=30)
        assert any("Erased 'demo'" in m for m in notifications(app))
    assert not (demo_home / "users" / "demo").exists()


async def test_ledger_fits_80_columns_and_reads_as_sentences(demo_home):
    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlocked(pilot)
        await pilot.press("f3")  # a list that uses the profile: one disclosure in the ledger
        await wait_for(pilot, lambda: app.screen.recs, timeout=60)
        await pilot.press("f6")
        screen = app.screen
        table = screen.query_one("#ledger")
        await wait_for(pilot, lambda: table.row_count == 1, timeout=30)
        await pilot.pause(0.3)
        header = next(line for line in screen_text(app).splitlines() if "When" in line and "Why" in line)
        assert "To" in header and "Shared" in header, f"a ledger column is off-screen: {header!r}"
        row = next(line for line in screen_text(app).splitlines() if "today" in line)
        assert "recommen…" in row and "local reco…" in row and " of 5" in row, f"the ledger row: {row!r}"
        assert "none" not in str(table.get_row_at(0)[-1]) and "?" not in str(table.get_row_at(0)[-1])

        table.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not screen)
        text = str(app.screen.query_one("#reader-text").render())
        assert "The local recommender was told" in text and "Kept back: age, occupation." in text
        assert "{" not in text and "0.999" not in text, text
        assert "with 100% confidence" in text


# ---------------------------------------------------------------------- palette, help, themes


async def test_command_palette_offers_the_apps_commands(demo_home):
    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlocked(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"go to history")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current_mode == "history")
        await pilot.press("ctrl+p")
        await pilot.press(*"refresh recommendations")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current_mode == "recommend")
        await wait_for(pilot, lambda: app.screen.recs, timeout=60)


async def test_f1_lists_every_binding(demo_home):
    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlocked(pilot)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        shown = " ".join(str(s.render()) for s in app.screen.query(".help-section"))
        for screen_cls in [type(app), *LocalpersApp.MODES.values()]:
            for binding in screen_cls.__dict__.get("BINDINGS", []):
                if binding.description:
                    assert binding.description in shown, (screen_cls.__name__, binding.description)
        assert len(help_sections(app)) == 7
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen))


async def test_theme_cycles_and_is_remembered(demo_home):
    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlocked(pilot)
        before = app.theme
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert app.theme != before
        chosen = app.theme
    assert f'theme = "{chosen}"' in (demo_home / "config.toml").read_text()
    again = LocalpersApp(home=demo_home, demo=True)
    assert again.theme == chosen


def _contrast(widget) -> float:
    """WCAG contrast ratio of a widget's text against its background."""
    def luminance(c) -> float:
        def channel(v: int) -> float:
            v /= 255
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
        return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b)

    _, _, background, color = widget.colors
    high, low = sorted([luminance(color), luminance(background)], reverse=True)
    return (high + 0.05) / (low + 0.05)


async def test_title_and_demo_badge_are_readable_in_every_theme(demo_home):
    from localpers.tui.app import THEME_CYCLE

    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await unlocked(pilot)
        for theme in THEME_CYCLE:
            app.theme = theme
            await pilot.pause()
            for selector in ("#nav-title", "#nav-user-long"):
                ratio = _contrast(app.screen.query_one(selector))
                assert ratio >= 4.5, f"{selector} in {theme}: contrast {ratio:.2f}:1, under 4.5:1"


async def test_errors_are_notifications_that_say_what_to_do(demo_home):
    app = LocalpersApp(home=demo_home, demo=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await unlocked(pilot)
        await pilot.press("f4")
        await pilot.press("i")
        await wait_for(pilot, lambda: app.screen.query("#path"))
        app.screen.query_one("#path").value = str(demo_home / "no-such-mailbox.mbox")
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(n.severity == "error" for n in app._notifications), timeout=30)
        error = next(n for n in app._notifications if n.severity == "error")
        assert "no-such-mailbox.mbox" in error.message
        assert app.is_running


def test_cli_command_is_registered():
    from click.testing import CliRunner

    from localpers.cli import main

    result = CliRunner().invoke(main, ["tui", "--help"])
    assert result.exit_code == 0
    assert "--demo" in result.output and "--user" in result.output
