"""Small file helpers: atomic writes (a kill never leaves a half-written file) and a lock on a
directory (two runs never write into the same work directory at once)."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
import warnings
from pathlib import Path


def _umask() -> int:
  """The process umask, read without changing it where the system allows (Linux)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError, IndexError):
    pass
  mask = os.umask(0o022)  # elsewhere: set and restore (briefly process-wide)
  os.umask(mask)
  return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """Writes ``text`` to ``path`` atomically (a temporary file in the same folder, then
  ``os.replace``): readers see the old content or the new one, never a partial file.

  The file gets the permissions of an ordinary new file (``0o666`` minus the umask), not the
  ``0o600`` of the temporary file.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fchmod(f.fileno(), 0o666 & ~_umask())
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    try:
      os.unlink(tmp)
    except FileNotFoundError:
      pass
    raise


class DirectoryLockedError(RuntimeError):
  """Another live process holds the lock of the directory."""


class StaleLockWarning(UserWarning):
  """The lock file named a process that ended without releasing it; the lock was taken over."""


class DirectoryLock:
  """An exclusive, non-blocking lock on a directory: ``fcntl.flock`` on ``directory/.lock``,
  which also records the holder (pid, host, start time) for the messages.

  The kernel releases the lock when its process ends, however it ends, so a lock left by a
  killed run is taken over (with a :class:`StaleLockWarning` naming the old pid); a live holder
  makes :meth:`acquire` raise :class:`DirectoryLockedError` at once. The lock file is never
  deleted (deleting it would let two processes lock two different files).

  Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with DirectoryLock(d):
    ...   try:
    ...     DirectoryLock(d).acquire()
    ...   except DirectoryLockedError as e:
    ...     print("refused")
    refused
  """

  NAME = ".lock"

  def __init__(self, directory: str | os.PathLike, *, what: str = "work directory"):
    self.directory = Path(directory)
    self.path = self.directory / self.NAME
    self.what = what
    self._fd: int | None = None

  def acquire(self) -> DirectoryLock:
    """Takes the lock or raises :class:`DirectoryLockedError` (never waits)."""
    import fcntl
    if self._fd is not None:
      return self
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = self._holder(fd)
      os.close(fd)
      who = (f"pid {holder.get('pid')} on {holder.get('host')}, since "
             f"{holder.get('started')}" if holder else "another process")
      raise DirectoryLockedError(
          f"{self.what} {self.directory} is in use by another run ({who}); wait for it to "
          "finish or use another directory") from None
    except BaseException:
      os.close(fd)
      raise
    old = self._holder(fd)
    if old and old.get("pid") not in (None, os.getpid()):  # its holder died holding it
      warnings.warn(f"{self.what} {self.directory}: took over the lock left by pid "
                    f"{old.get('pid')} on {old.get('host')} (started {old.get('started')}), "
                    "which ended without releasing it", StaleLockWarning, stacklevel=2)
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                         "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    os.ftruncate(fd, 0)
    os.pwrite(fd, record.encode() + b"\n", 0)
    self._fd = fd
    return self

  @staticmethod
  def _holder(fd: int) -> dict:
    try:
      text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
      return json.loads(text) if text else {}
    except (OSError, ValueError):
      return {}

  def release(self) -> None:
    """Releases the lock (clearing the holder record)."""
    import fcntl
    if self._fd is None:
      return
    fd, self._fd = self._fd, None
    try:
      os.ftruncate(fd, 0)
    except OSError:
      pass
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)

  @property
  def held(self) -> bool:
    return self._fd is not None

  def __enter__(self) -> DirectoryLock:
    return self.acquire()

  def __exit__(self, *exc) -> bool:
    self.release()
    return False


__all__ = ["DirectoryLock", "DirectoryLockedError", "StaleLockWarning", "atomic_write_text"]
