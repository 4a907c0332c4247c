"""The first commands a new user types: ``python -m localpers``, and a user name that has no vault."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from localpers.cli import main
from localpers.vault import Vault


def test_python_dash_m_localpers_is_the_cli(home):
    out = subprocess.run([sys.executable, "-m", "localpers", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage: localpers ") and "recommend" in out.stdout


def test_an_unknown_user_is_named_before_any_passphrase_is_asked(home):
    Vault.create("ada", "correct horse battery", kdf_seconds=0).close()
    runner = CliRunner()
    for args in (["search", "-u", "nosuchuser", "hello"], ["history", "list", "-u", "nosuchuser"],
                 ["tui", "--user", "nosuchuser"]):
        # No LOCALPERS_PASSPHRASE and an empty stdin: a passphrase prompt would show in the output.
        result = runner.invoke(main, args, input="")
        assert result.exit_code == 1, (args, result.output)
        assert "Passphrase" not in result.output
        assert result.stderr.strip() == ("Error: no user 'nosuchuser' on this machine (users: ada); "
                                         "create one with: localpers user create nosuchuser"), args
