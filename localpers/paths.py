"""Where localpers keeps its files, and its TOML config.

Everything lives under one data directory:

- ``$LOCALPERS_HOME`` when set (tests and the demo use this), else
- the platform's user data directory (``~/.local/share/localpers`` on Linux, XDG aware).

Layout::

    <home>/config.toml        settings (no personal data)
    <home>/users/<name>/      one encrypted vault per user

Assembled base-model weights are public, so they live apart in the user cache
directory (``~/.cache/localpers/models``, or ``$LOCALPERS_MODELS``) and are shared.

Example::

    >>> from localpers.paths import data_dir
    >>> data_dir()  # doctest: +SKIP
    PosixPath('/home/ada/.local/share/localpers')
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import platformdirs
import tomli_w

from .errors import LocalpersError

APP_NAME = "localpers"


def private_dir(path: Path, what: str = "the folder") -> Path:
    """Make ``path`` a folder only its owner can enter (0700), whatever the umask.

    Folders it creates get 0700; an existing one that others could read is tightened.
    A path that cannot be a folder raises :class:`LocalpersError` naming it as ``what``.
    """
    if path.exists() and not path.is_dir():
        raise LocalpersError(f"{what} {path} is a file, not a folder; point it at a folder (or move the file)")
    created = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise LocalpersError(f"cannot create {what} {path} ({exc.strerror or exc}); choose another folder") from None
    for folder in created:
        os.chmod(folder, 0o700)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Set a file we wrote to 0600 (owner only), whatever the umask was when it was created."""
    os.chmod(path, 0o600)
    return path


def data_dir() -> Path:
    """The root of everything localpers stores (created on first use, mode 0700, tightened if looser)."""
    home = os.environ.get("LOCALPERS_HOME")
    path = Path(home).expanduser() if home else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return private_dir(path, "LOCALPERS_HOME" if home else "the data directory")


def models_dir() -> Path:
    """Assembled model weights: public files, so not encrypted, and shared by every data directory.

    ``$LOCALPERS_MODELS`` overrides; the default is the platform's user cache directory.
    """
    custom = os.environ.get("LOCALPERS_MODELS")
    path = Path(custom).expanduser() if custom else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def users_dir() -> Path:
    return private_dir(data_dir() / "users", "the users folder")


def config_path() -> Path:
    return data_dir() / "config.toml"


def default_threads() -> int:
    """Threads for llama.cpp and torch: every core we may use (llama.cpp's own default is half)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


# The embedded default writer model (a registry name in localpers.models).
DEFAULT_MODEL = "gemma3-270m"


@dataclass
class Config:
    """Settings from ``config.toml``. Unknown keys are kept out; missing keys take these defaults.

    Example ``config.toml``::

        writer_model = "gemma3-270m"        # or a path to any GGUF file
        playback_model = "smollm2-135m-instruct"
        embedding_model = "all-minilm-l6-v2"
        threads = 4                         # the most; fewer while other programs keep cores busy
        context_size = 2048                 # tokens the writer model sees at once
        default_user = "ada"
        theme = "nord"

    ``localpers config set KEY VALUE`` changes one (checked, see :meth:`set`); only the
    keys that differ from these defaults are written.
    """

    writer_model: str = DEFAULT_MODEL
    playback_model: str = "smollm2-135m-instruct"
    embedding_model: str = "all-minilm-l6-v2"
    threads: int = field(default_factory=default_threads)
    context_size: int = 2048
    default_user: str = ""
    theme: str = "textual-dark"

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def load(cls, path: Path | None = None) -> "Config":
        """Read the config file; a missing file gives the defaults."""
        path = path or config_path()
        if not path.exists():
            return cls()
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise LocalpersError(f"{path} is not valid TOML ({exc}); fix or delete it") from None
        values = {}
        for name in cls.keys():
            if name in raw:
                try:
                    values[name] = _checked(name, raw[name])
                except LocalpersError as exc:
                    raise LocalpersError(f"{path}: {exc}; fix or delete it") from None
        return cls(**values)

    def set(self, key: str, text: str) -> None:
        """Set ``key`` from its text form, checked: an unknown key, a wrong type or an unknown theme
        raises :class:`LocalpersError` naming the problem, and nothing changes. Whether a model is
        installed or a user exists is :func:`localpers.session.check_setting`'s to say.

        >>> cfg = Config(); cfg.set("context_size", "4096"); cfg.context_size
        4096
        """
        if key not in self.keys():
            raise LocalpersError(f"no setting named {key!r}; settings: {', '.join(self.keys())}")
        wanted = type(getattr(Config(), key))
        value: str | int = text
        if wanted is int:
            try:
                value = int(text)
            except ValueError:
                raise LocalpersError(f"{key} must be an integer, not {text!r}") from None
        value = _checked(key, value)
        if key == "theme":
            from textual.theme import BUILTIN_THEMES  # deferred: only this check needs Textual

            if value not in BUILTIN_THEMES:
                raise LocalpersError(f"no theme named {value!r}; themes: {', '.join(BUILTIN_THEMES)}")
        setattr(self, key, value)

    def changed(self) -> dict[str, str | int]:
        """The settings that differ from the defaults (what :meth:`save` writes)."""
        defaults = asdict(Config())
        return {k: v for k, v in asdict(self).items() if v != defaults[k]}

    def save(self, path: Path | None = None) -> Path:
        """Write the settings that differ from the defaults, atomically (a crash never leaves half a file)."""
        path = path or config_path()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".tmp")  # 0600 whatever the umask
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(tomli_w.dumps(self.changed()))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def _checked(key: str, value: object) -> str | int:
    """``value`` if it has the type (and range) the setting ``key`` needs, else a LocalpersError."""
    wanted = type(getattr(Config(), key))
    if not isinstance(value, wanted) or isinstance(value, bool):
        raise LocalpersError(f"{key} must be {'an integer' if wanted is int else 'a string'}, not {value!r}")
    if wanted is int and value < 1:  # type: ignore[operator]
        raise LocalpersError(f"{key} must be at least 1, not {value}")
    return value  # type: ignore[return-value]
