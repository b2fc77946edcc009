"""Where the Microsoft refresh token lives: the ``StoredToken`` value, the ``TokenStore`` protocol and
the in-memory and file stores.

Foundation, not HTTP: the OAuth client (``microsoft/oauth.py``) refreshes through a ``TokenStore`` and
the outbox keeps one in its database (``outbox/tokens.py``); both import this module, so the outbox
never imports ``requests``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from msclkid_middleware.errors import StoreError

__all__ = [
    "PRIVATE_MODE",
    "FileTokenStore",
    "MemoryTokenStore",
    "StoredToken",
    "TokenStore",
    "create_private",
    "exposed_files",
]

#: Files holding tokens are readable and writable by their owner only.
PRIVATE_MODE = 0o600

_log = logging.getLogger("msclkid_middleware.tokens")


def create_private(path: str | os.PathLike[str]) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists (``True`` when it was created).

    SQLite creates a database file with the process's umask (0644 as a rule) and gives its ``-wal`` and
    ``-shm`` files the database file's mode, so creating the file first keeps all three private.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def exposed_files(*paths: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """``(path, mode)`` of every existing file among ``paths`` that group or others may read or write."""
    found: list[tuple[str, int]] = []
    for path in paths:
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            continue
        if mode & 0o077:
            found.append((os.fspath(path), mode))
    return found


@dataclass(frozen=True, slots=True)
class StoredToken:
    """What a :class:`TokenStore` keeps: the newest refresh token and, when known, the access token.

    ``serial`` grows by one with every refresh and decides which token is newer; ``issued_at`` is the
    wall-clock time (epoch seconds) of the refresh, for people reading the store.
    """

    refresh_token: str
    issued_at: float
    serial: int = 0
    access_token: str | None = None
    access_expires_at: float | None = None
    scope: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.refresh_token, str) or not self.refresh_token.strip():
            raise ValueError("a stored token needs a non-empty refresh token")
        if self.serial < 0:
            raise ValueError("serial must be >= 0")

    def newer_than(self, other: StoredToken | None) -> bool:
        return other is None or (self.serial, self.issued_at) > (other.serial, other.issued_at)

    def access_valid(self, now: float, margin: float = 0.0) -> bool:
        return bool(self.access_token) and self.access_expires_at is not None and now < self.access_expires_at - margin

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "refresh_token": self.refresh_token,
            "issued_at": self.issued_at,
            "serial": self.serial,
            "access_token": self.access_token,
            "access_expires_at": self.access_expires_at,
            "scope": self.scope,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StoredToken:
        return cls(
            refresh_token=str(data["refresh_token"]),
            issued_at=float(data["issued_at"]),
            serial=int(data.get("serial", 0)),
            access_token=data.get("access_token") or None,
            access_expires_at=float(data["access_expires_at"]) if data.get("access_expires_at") is not None else None,
            scope=data.get("scope"),
        )

    def __repr__(self) -> str:
        return f"StoredToken(refresh_token=<redacted>, issued_at={self.issued_at!r}, serial={self.serial!r})"


@runtime_checkable
class TokenStore(Protocol):
    """Where the newest refresh token lives between runs and across processes.

    ``save`` returns ``False`` (and changes nothing) when the stored token is at least as new.  ``lock()``
    is a re-entrant, cross-process lock: refreshes happen inside it, after a fresh ``load()``.
    """

    def load(self) -> StoredToken | None: ...

    def save(self, token: StoredToken) -> bool: ...

    def lock(self) -> AbstractContextManager[None]: ...


class MemoryTokenStore:
    """A token store for one process (tests, scripts)."""

    def __init__(self, token: StoredToken | None = None) -> None:
        self._token = token
        self._lock = threading.RLock()

    def load(self) -> StoredToken | None:
        with self._lock:
            return self._token

    def save(self, token: StoredToken) -> bool:
        with self._lock:
            if not token.newer_than(self._token):
                return False
            self._token = token
            return True

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with self._lock:
            yield

    def __repr__(self) -> str:
        return "MemoryTokenStore()"


class FileTokenStore:
    """A JSON file (mode 0600) guarded by ``fcntl.flock`` on a sidecar ``<path>.lock`` file.

    Writes go to a temporary file in the same directory (0600, fsync), then ``os.replace`` over the
    store and an fsync of the directory, so a crash leaves either the old or the new token, never half.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._checked = False

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.path)!r})"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        # The thread lock serialises threads of this process and makes the flock re-entrant for the holder
        # (flock on a second descriptor of the same file would block against ourselves).
        with self._thread_lock:
            if self._depth == 0:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                except OSError as exc:
                    raise StoreError(f"cannot open token lock file {self.lock_path}: {exc.strerror}") from None
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError as exc:
                    os.close(fd)
                    raise StoreError(f"cannot lock {self.lock_path}: {exc.strerror}") from None
                self._fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fd, self._fd = self._fd, None
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)

    def load(self) -> StoredToken | None:
        if not self._checked:
            self._checked = True
            for path, mode in exposed_files(self.path):
                _log.warning("token file %s is open to group or others (mode %o): chmod 600 it", path, mode)
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read token store {self.path}: {exc.strerror}") from None
        try:
            return StoredToken.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            # Never guess: a damaged store must be looked at (or replaced by `msclkid auth`), not overwritten.
            raise StoreError(f"token store {self.path} is not valid; run `msclkid auth` to replace it") from None

    def save(self, token: StoredToken) -> bool:
        with self.lock():
            if not token.newer_than(self.load()):
                return False
            self._write(json.dumps(token.to_json(), separators=(",", ":")).encode())
            return True

    def _write(self, data: bytes) -> None:
        directory = self.path.parent
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise StoreError(f"cannot write token store in {directory}: {exc.strerror}") from None
        try:
            os.fchmod(fd, 0o600)  # mkstemp already uses 0600; be explicit about the contract
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StoreError(f"cannot write token store {self.path}: {exc.strerror}") from None
