"""``localpers user ...``: create, list and manage the encrypted vaults of this machine's users.

Passphrases are typed at a hidden prompt, or taken from ``LOCALPERS_PASSPHRASE``
(and ``LOCALPERS_NEW_PASSPHRASE`` for ``user passwd``) for scripts. They are never
written anywhere.

Examples::

    localpers user create ada
    localpers user list
    localpers user passwd -u ada
    localpers user rekey -u ada
    localpers user backup ~/ada.lpbackup -u ada
    localpers user restore ~/ada.lpbackup
    localpers user export ~/ada.jsonl -u ada --plaintext
    localpers user erase ada
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import LocalpersError
from ..text import human_bytes
from .options import user_option



def _new_passphrase(env: str, what: str) -> str:
    passphrase = os.environ.get(env) or click.prompt(what, hide_input=True, confirmation_prompt=True)
    from ..vault import check_new_passphrase  # heavy: sqlite-utils and cryptography, not needed by `--help`

    check_new_passphrase(passphrase)
    return passphrase


def _open(user: str | None):  # -> Vault
    from ..cli import open_vault

    return open_vault(user)


@click.group(name="user")
def user_group() -> None:
    """Create, list and manage the encrypted per-user vaults."""


@user_group.command()
@click.argument("name")
@click.option("--kdf-seconds", type=float, default=0.5, show_default=True,
              help="How long unlocking takes here (Argon2id is calibrated to it; never below OWASP's minimum).")
@click.option("--keyring", "use_keyring", is_flag=True, help="Also let the OS keyring unlock this vault.")
def create(name: str, kdf_seconds: float, use_keyring: bool) -> None:
    """Create an encrypted vault for NAME, protected by a new passphrase."""
    from ..vault import Vault

    Vault.user_dir(name)  # a clear error for a bad name before asking for anything
    if Vault.exists(name):
        raise LocalpersError(f"user {name!r} already exists")
    passphrase = _new_passphrase("LOCALPERS_PASSPHRASE", f"New passphrase for {name}")
    with Vault.create(name, passphrase, kdf_seconds=kdf_seconds) as vault:
        if use_keyring:
            vault.enable_keyring()
        click.echo(f"Created the vault of {name} in {vault.path.parent}")
    click.echo(f"Use it with --user {name} (or LOCALPERS_USER={name}). Forgetting the passphrase loses the data: "
               "keep it safe, and make backups with `localpers user backup`.")


@user_group.command(name="list")
def list_users() -> None:
    """List the users that have a vault on this machine."""
    from ..paths import Config, users_dir
    from ..vault import VAULT_FILE, Vault

    names = Vault.users()
    if not names:
        click.echo("No users yet. Create one with: localpers user create NAME")
        return
    default = Config.load().default_user
    for name in names:
        folder = users_dir() / name
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name.startswith(VAULT_FILE))
        marks = [m for m, on in (("default", name == default), ("demo", name == "demo")) if on]
        click.echo(f"{name:<20} {human_bytes(size, iec=True):>10}  {', '.join(marks)}".rstrip())


@user_group.command()
@user_option
@click.option("--kdf-seconds", type=float, default=0.5, show_default=True, help="Unlock time for the new passphrase.")
def passwd(user: str | None, kdf_seconds: float) -> None:
    """Change a vault's passphrase.

    Only the data key is rewrapped; no record is re-encrypted. So an old copy of the
    vault file (or a backup) still opens with the old passphrase, and would also open
    data written later under the same key. To cut that link, run `localpers user rekey`.
    """
    with _open(user) as vault:
        if vault.is_demo:
            raise LocalpersError("the demo profile's passphrase is public on purpose and cannot be changed")
        vault.change_passphrase(_new_passphrase("LOCALPERS_NEW_PASSPHRASE", f"New passphrase for {vault.user}"),
                                kdf_seconds=kdf_seconds)
        click.echo(f"Changed the passphrase of {vault.user}. Backups made before still need the old one; "
                   "run `localpers user rekey` to also re-encrypt everything under a new data key.")


@user_group.command()
@user_option
@click.option("--kdf-seconds", type=float, default=0.5, show_default=True, help="Unlock time for the passphrase.")
def rekey(user: str | None, kdf_seconds: float) -> None:
    """Re-encrypt the whole vault under a new random data key.

    After this, old copies of the vault file and old backups no longer share a key
    with the live vault. The passphrase stays the same (it is asked again to wrap the
    new key). The new vault is built beside the old one and swapped in atomically: an
    interruption leaves the old vault intact.
    """
    with _open(user) as vault:
        if vault.is_demo:
            raise LocalpersError("the demo profile's key is public on purpose; there is nothing to rekey")
        passphrase = os.environ.get("LOCALPERS_PASSPHRASE") or click.prompt(
            f"Passphrase for {vault.user} (to wrap the new key)", hide_input=True)
        with click.progressbar(length=max(1, sum(getattr(vault, t).count() for t in _tables())),
                               label="Re-encrypting", file=click.get_text_stream("stderr")) as bar:
            last = [0]

            def advance(done: int, total: int, table: str) -> None:
                bar.update(done - last[0])
                last[0] = done

            vault.rekey(passphrase, kdf_seconds=kdf_seconds, progress=advance)
        click.echo(f"Re-encrypted the vault of {vault.user} under a new data key (key version {vault.key_version}). "
                   "Backups made before still restore the old state with the old key; make a new backup.")


def _tables() -> list[str]:
    from ..vault import TABLES

    return list(TABLES)


@user_group.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--forgot-passphrase", is_flag=True,
              help="Erase without unlocking (the data is unreadable without the passphrase anyway).")
def erase(name: str, yes: bool, forgot_passphrase: bool) -> None:
    """Erase NAME's vault: every record, adapter and index, overwritten and removed."""
    from ..vault import Vault

    if not Vault.exists(name):
        raise LocalpersError(f"no vault for user {name!r}")
    if not yes:
        click.confirm(f"Erase every record of {name}? This cannot be undone", abort=True)
    if forgot_passphrase:
        Vault.erase(name)
    else:
        _open(name).erase_user()
    click.echo(f"Erased the vault of {name}.")


@user_group.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@user_option
def backup(path: Path, user: str | None) -> None:
    """Write an encrypted backup of a vault to PATH (restore it anywhere with the passphrase)."""
    from ..vault import write_backup  # heavy: sqlite-utils and cryptography, not needed by `--help`

    with _open(user) as vault:
        written = write_backup(vault, path)
    click.echo(f"Wrote an encrypted backup of {vault.user} to {written} ({human_bytes(written.stat().st_size, iec=True)}).")


@user_group.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace (erase) an existing vault of the same user.")
def restore(path: Path, overwrite: bool) -> None:
    """Recreate a vault from a backup file made by `localpers user backup`."""
    from ..vault import Vault, read_header, restore_backup  # heavy: sqlite-utils and cryptography

    user = read_header(path)["user"]
    if Vault.exists(user) and not overwrite:
        raise LocalpersError(f"user {user!r} already has a vault here; add --overwrite to replace it")
    passphrase = os.environ.get("LOCALPERS_PASSPHRASE") or click.prompt(f"Passphrase of the backup of {user}",
                                                                        hide_input=True)
    with restore_backup(path, passphrase, overwrite=overwrite) as vault:
        counts = ", ".join(f"{n} {t}" for t, n in vault.stats()["tables"].items() if n)
    click.echo(f"Restored the vault of {user} ({counts or 'empty'}).")


@user_group.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@user_option
@click.option("--plaintext", is_flag=True, help="Confirm that PATH will hold your records UNENCRYPTED.")
@click.option("--include-blobs", is_flag=True, help="Also write the vector index and adapters (base64).")
def export(path: Path, user: str | None, plaintext: bool, include_blobs: bool) -> None:
    """Export every record, decrypted, to a JSON Lines file (needs --plaintext)."""
    from ..vault import export_jsonl  # heavy: sqlite-utils and cryptography, not needed by `--help`

    if not plaintext:
        raise LocalpersError("export writes your records unencrypted: add --plaintext to confirm, "
                             "or use `localpers user backup` for an encrypted copy")
    with _open(user) as vault:
        n = export_jsonl(vault, path, include_blobs=include_blobs)
    click.echo(f"Wrote {n} records of {vault.user} to {path} IN PLAINTEXT. Delete it when done.")


@user_group.command(name="keyring")
@click.argument("state", type=click.Choice(["on", "off"]))
@user_option
def keyring_cmd(state: str, user: str | None) -> None:
    """Let the OS keyring unlock a vault without the passphrase (on), or stop it (off)."""
    with _open(user) as vault:
        if state == "on":
            vault.enable_keyring()
            click.echo(f"The OS keyring now unlocks {vault.user}; the passphrase still works.")
        else:
            vault.disable_keyring()
            click.echo(f"The OS keyring no longer unlocks {vault.user}.")


commands = [user_group]
