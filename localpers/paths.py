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


@dataclass
class Config:
    """Settings from ``config.toml``. Unknown keys are kept out; missing keys take these defaults.

    Example ``config.toml``::

        writer_model = "gemma3-270m"        # or a path to any GGUF file
        playback_model = "smollm2-135m-instruct"
        embedding_model = "all-minilm-l6-v2"
        threads = 4
        default_user = "ada"
    """

    writer_model: str = "gemma3-270m"
    playback_model: str = "smollm2-135m-instruct"
    embedding_model: str = "all-minilm-l6-v2"
    threads: int = field(default_factory=default_threads)
    context_size: int = 2048
    default_user: str = ""
    theme: str = "textual-dark"

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
        defaults = cls()
        values = {}
        for f in fields(cls):
            if f.name not in raw:
                continue
            value, wanted = raw[f.name], type(getattr(defaults, f.name))
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise LocalpersError(f"{path}: {f.name} must be {'an integer' if wanted is int else 'a string'}, "
                                     f"not {value!r}; fix or delete it")
            if wanted is int and value < 1:
                raise LocalpersError(f"{path}: {f.name} must be at least 1, not {value}; fix or delete it")
            values[f.name] = value
        return cls(**values)

    def save(self, path: Path | None = None) -> Path:
        path = path or config_path()
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # 0600 whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(tomli_w.dumps(asdict(self)))
        os.replace(tmp, path)  # atomic: a crash never leaves half a config
        return path
