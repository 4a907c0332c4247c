"""Packaging, paths, config, model registry and the CLI's conventions."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from localpers import models
from localpers.cli import main
from localpers.errors import LocalpersError, ModelNotFound
from localpers.paths import Config, config_path, data_dir

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_everything_under_the_localpers_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("localpers-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names}
    assert top_level == {"localpers", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert "localpers/tui/__init__.py" in names
    assert "localpers/adapters/__init__.py" in names
    assert any(n.startswith("localpers/tui/") and n.endswith(".tcss") for n in names)


def test_data_dir_follows_localpers_home(home):
    assert data_dir() == home
    assert config_path() == home / "config.toml"


def test_config_round_trip_and_bad_toml(home):
    cfg = Config.load()
    assert cfg.writer_model == "gemma3-270m" and cfg.threads >= 1
    cfg.default_user = "ada"
    cfg.threads = 3
    cfg.save()
    again = Config.load()
    assert again.default_user == "ada" and again.threads == 3
    config_path().write_text("writer_model = [unclosed")
    with pytest.raises(LocalpersError, match="not valid TOML"):
        Config.load()


def test_registry_resolves_every_embedded_model():
    for name in models.REGISTRY:
        assert models.ensure(name).exists()
    gemma = models.ensure("gemma3-270m")
    assert models.model_id(gemma) == f"sha256:{models.REGISTRY['gemma3-270m'].sha256}"
    assert all(row["installed"] for row in models.status())


def test_missing_weights_package_names_the_package(monkeypatch):
    spec = models.ModelSpec("ghost", "writer", "ghost-weights-pkg", "ghost_weights_pkg", "not installed")
    with pytest.raises(ModelNotFound, match="pip install ghost-weights-pkg"):
        models._package_dir(spec)


def test_doctor_prints_versions_models_threads_and_data_dir(home):
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    for needle in ("llama-cpp-python", "torch", "threads", str(home), "gemma3-270m", "all-minilm-l6-v2"):
        assert needle in result.output
    assert "MISSING" not in result.output


def test_every_command_has_help():
    runner = CliRunner()

    def walk(command, path):
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(main, [])


def test_exit_codes_usage_is_2_user_error_is_1(home):
    runner = CliRunner()
    assert runner.invoke(main, ["no-such-command"]).exit_code == 2
    (home / "config.toml").write_text("= broken")
    result = runner.invoke(main, ["doctor"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error:") and len(result.output.strip().splitlines()) == 1


def test_console_script_runs(home):
    exe = Path(sys.executable).parent / "localpers"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert "localpers" in out.stdout
