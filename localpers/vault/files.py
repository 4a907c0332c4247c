"""The vault's files on disk: the open lock, the write lock, durable renames, shredding, and plaintext for a path.

Nothing here knows about tables or keys: these helpers deal with folders, file descriptors and locks
(``vault.lock`` names who holds the write lock: a pid and a program name, nothing personal).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import VaultLocked

LOCK_FILE = "vault.lock"


def acquire_lock(folder: Path, user: str, *, shared: bool = False, wait: float = 0.0) -> Any:
    """Lock ``vault.lock``: shared to open a vault, exclusive to create, erase or restore it.

    A shared lock waits (up to ``wait`` seconds) for an exclusive one, which is brief;
    an exclusive lock fails at once while anyone has the vault open.
    """
    path = folder / LOCK_FILE
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
    f = open(path, "a+")
    try:
        _lock(f, shared=shared)
    except OSError:
        if shared:
            deadline = time.monotonic() + wait
            while True:
                time.sleep(0.05)
                with contextlib.suppress(OSError):
                    _lock(f, shared=True)
                    return f
                if time.monotonic() > deadline:
                    break
        f.close()
        raise VaultLocked(f"the vault of {user!r} is open in another localpers process; close it and try again") from None
    return f


def release_lock(f: Any) -> None:
    with contextlib.suppress(OSError):
        _unlock(f)
    f.close()


def make_exclusive(f: Any, user: str) -> None:
    """Turn this process's shared open lock into an exclusive one, or raise VaultLocked."""
    if flock_folder is None:  # Windows: the one lock is exclusive already
        return
    try:
        _lock(f, shared=False)
    except OSError:
        with contextlib.suppress(OSError):
            _lock(f, shared=True)  # a failed conversion may drop the shared lock: take it back
        raise VaultLocked(f"the vault of {user!r} is open in another localpers process (the app, or a "
                          "command still running); close it there first") from None


def share_lock(f: Any) -> None:
    with contextlib.suppress(OSError):
        _lock(f, shared=True)


def name_holder(f: Any, program: str) -> None:
    """Write who holds the write lock into ``vault.lock`` (pid and program: nothing personal)."""
    if f is None:  # a vault file being built (rekey) has no lock file of its own
        return
    with contextlib.suppress(OSError):
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {program}\n")
        f.flush()


def lock_holder(f: Any) -> str:
    """``"the app, pid 42"``: who last took the write lock, as written by :func:`name_holder`."""
    try:
        f.seek(0)
        pid, _, name = f.read(200).strip().partition(" ")
        int(pid)
    except (OSError, ValueError):
        return "another localpers process"
    return f"{name or 'localpers'}, pid {pid}"


def open_folder(folder: Path) -> int | None:
    try:
        return os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder: writes are serialized by SQLite alone
        return None


try:  # POSIX: flock, released by the kernel when the process dies, however it dies
    import fcntl

    def flock_folder(fd: int, *, exclusive: bool, wait: bool) -> None:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))

    def unflock_folder(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

    def _lock(f: Any, *, shared: bool = False) -> None:
        flock_folder(f.fileno(), exclusive=not shared, wait=False)

    def _unlock(f: Any) -> None:
        fcntl.flock(f, fcntl.LOCK_UN)

except ImportError:  # Windows: one exclusive lock per vault (no shared locks): one process at a time
    import msvcrt

    flock_folder = None  # type: ignore[assignment]

    def unflock_folder(fd: int) -> None:
        pass

    def _lock(f: Any, *, shared: bool = False) -> None:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(f: Any) -> None:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)


@contextlib.contextmanager
def replace_whole(path: Path, *, text: bool = False) -> Iterator[IO[Any]]:
    """A new 0600 file written beside ``path`` and renamed onto it once complete and on disk.

    Whatever goes wrong while writing, ``path`` is left as it was and the partial file removed.
    """
    tmp = path.with_name(path.name + ".partial")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with (os.fdopen(fd, "w", encoding="utf-8") if text else os.fdopen(fd, "wb")) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_db_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def shred(path: Path) -> None:
    """Overwrite a file with zeros, flush it to disk, then delete it."""
    with contextlib.suppress(FileNotFoundError):
        size = path.stat().st_size
        with open(path, "r+b") as f:
            zeros = bytes(1 << 20)
            for start in range(0, size, len(zeros)):
                f.write(zeros[:min(len(zeros), size - start)])
            f.flush()
            os.fsync(f.fileno())
        path.unlink()


def shred_folder(folder: Path) -> None:
    for p in sorted(folder.rglob("*"), reverse=True):
        if p.is_file() and not p.is_symlink() and p.name != LOCK_FILE:
            shred(p)
    shutil.rmtree(folder, ignore_errors=True)
    fsync_dir(folder.parent)


@contextlib.contextmanager
def plaintext_file(data: bytes) -> Iterator[Path]:
    """Expose ``data`` at a path without writing it to persistent storage (see :meth:`Vault.blob_file`).

    Example::

        >>> with plaintext_file(b"secret") as path:
        ...     path.read_bytes()
        b'secret'
    """
    fd = None
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # e.g. a sandbox that forbids memfd
            fd = os.memfd_create("localpers-blob")  # close-on-exec: child processes never inherit it
    if fd is not None:
        try:
            _write_all(fd, data)
            yield Path(f"/proc/{os.getpid()}/fd/{fd}")
        finally:
            os.close(fd)
        return
    # No memfd (macOS, Windows): a 0600 file in a fresh 0700 directory, in RAM where the OS offers one.
    ram = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    folder = tempfile.mkdtemp(prefix="localpers-", dir=ram)
    path = Path(folder) / "blob"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


