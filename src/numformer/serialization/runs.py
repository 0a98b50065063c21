"""Run folders: where a training run writes, kept so that no run ever loses work.

One type serves ``numformer train`` and ``numformer app NAME train``:

- ``check``: the folder can hold a run (a folder or nothing yet, under a folder, writable);
- ``lock``: one writer at a time (an advisory ``flock`` on ``.train.lock``, released when the
  process ends, however it ends); ``locked`` tells another process whether a writer holds it;
- ``existing``: the names of a run's own files already there (what ``--overwrite`` may touch,
  and nothing else: a user's own files beside them stay);
- ``remove``: remove those files (``numformer train --overwrite``);
- ``stage`` and ``commit``: write a new run beside the old one (``.train-new``) and move it in
  only once it has completed; the old run's files wait in ``.train-old`` during the renames,
  which ignore Ctrl-C, SIGTERM and SIGHUP, and a failed rename moves everything back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

LOCK = ".train.lock"
STAGE = ".train-new"  # a train writes here first; a stopped train leaves it
REPLACING = ".train-old"  # the last run's files while a completed train moves in


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (a file, not writable, held by another writer,
    holding a run that would be replaced without ``--overwrite``): one line on the CLI."""


class RunFolder:
    """The folder ``path`` of one kind of run, whose own files are named by ``owned`` (names, or
    name prefixes ending in ``*``: ``"train-*"``).

    Args:
        path: the folder.
        owned: the names a run of this kind writes.
        flag: how the user named the folder, for messages (``--out``).
    """

    def __init__(self, path, owned: tuple, flag: str = "--out"):
        self.path = Path(path)
        self.owned = tuple(owned)
        self.flag = flag

    # --- what is there -------------------------------------------------------------------
    def check(self) -> None:
        """The folder can hold a run: a folder or nothing yet, under a folder, writable.

        Raises:
            RunFolderError: an empty name, a file, a symbolic link to nothing, a path under a
            file, or not writable."""
        out = self.path
        if not str(out).strip() or str(out) == ".":
            raise RunFolderError(
                f"{self.flag} must name a run folder (an empty {self.flag} would scatter the run among your files)"
            )
        if out.is_symlink() and not out.exists():
            raise RunFolderError(
                f"{self.flag} {out} is a symbolic link to {os.readlink(out)}, which does not exist: "
                "make that folder, or name another"
            )
        if out.exists() and not out.is_dir():
            raise RunFolderError(f"{self.flag} {out} is a file, not a folder")
        parent = out
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise RunFolderError(f"{self.flag} {out}: {parent} is a file, so no folder can be made under it")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise RunFolderError(f"{self.flag} {out}: {parent} is not writable")

    def _is_owned(self, name: str) -> bool:
        return any(name == o or (o.endswith("*") and name.startswith(o[:-1])) for o in self.owned)

    def existing(self) -> list[str]:
        """The run's own files and folders in ``path`` (and a stopped train's ``STAGE``,
        a killed replacement's ``REPLACING``), sorted; empty when it holds no run."""
        if not self.path.is_dir():
            return []
        names = [p.name for p in self.path.iterdir() if self._is_owned(p.name) or p.name in (STAGE, REPLACING)]
        return sorted(names)

    def remove(self, names=None) -> None:
        """Remove the run's own files (``existing()``, or ``names``); nothing else."""
        for name in self.existing() if names is None else names:
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)

    # --- one writer at a time ------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, what: str = "train"):
        """Hold ``path/.train.lock`` inside the block (the folder is made if missing). The lock
        file may be removed by its holder (``remove_lock``): a lock taken on a file that
        is no longer at its path is taken again on the new one.

        Raises:
            RunFolderError: another process holds it."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            yield
            return
        busy = RunFolderError(
            f"another {what} is writing into {self.path} now; wait for it to end, or choose another {self.flag}"
        )
        for _ in range(100):  # each retry means another process removed the file meanwhile
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(self.path / LOCK, "a")  # noqa: SIM115 - held across the yield below
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                raise busy from None
            if self._holds(handle):
                break
            handle.close()  # its holder removed the file after we opened it: lock the new one
        else:
            raise busy
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def _holds(self, handle) -> bool:
        """Whether the open ``handle`` is the file at ``path/.train.lock`` now."""
        try:
            here = os.stat(self.path / LOCK)
        except OSError:
            return False
        mine = os.fstat(handle.fileno())
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def remove_lock(self) -> None:
        """Remove the lock file, from inside ``lock`` (the folder a failed first run made is
        then removed whole); a process waiting on the old file locks a new one."""
        (self.path / LOCK).unlink(missing_ok=True)

    def locked(self) -> bool:
        """Whether another process holds the lock now (False where there is no lock file or
        no ``flock``)."""
        try:
            import fcntl
        except ImportError:
            return False
        try:
            with open(self.path / LOCK, "rb") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError:
                    return True
                fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError:
            return False
        return False

    # --- a new run beside the old one ----------------------------------------------------
    @property
    def stage(self) -> Path:
        """Where a new run is written before it replaces the old one."""
        return self.path / STAGE

    def commit(self, replaced) -> None:
        """Move the completed run in ``stage`` into ``path``, in place of the files named
        ``replaced`` (the last run's own files; those that do not exist are skipped). The old
        files wait in ``REPLACING`` and are removed once every new file is in; a rename that
        fails moves everything back.

        Args:
            replaced: names (or ``folder/name`` paths one level down) of the last run's files.

        Raises:
            RunFolderError: a rename failed; ``path`` is as it was and the new run is still in
            ``stage``."""
        out, stage, old = self.path, self.stage, self.path / REPLACING
        new = sorted(p.name for p in stage.iterdir())
        aside = [n for n in sorted(set(replaced) | set(new)) if (out / n).exists() or (out / n).is_symlink()]
        old.mkdir()
        for parent in {Path(n).parent for n in aside if Path(n).parent != Path(".")}:
            (old / parent).mkdir(parents=True, exist_ok=True)
        moved_aside, moved_in = [], []
        with signals_ignored():
            try:
                for name in aside:
                    (out / name).rename(old / name)
                    moved_aside.append(name)
                for name in new:
                    (stage / name).rename(out / name)
                    moved_in.append(name)
            except OSError as err:
                for name in reversed(moved_in):
                    (out / name).rename(stage / name)
                for name in reversed(moved_aside):
                    (old / name).rename(out / name)
                shutil.rmtree(old, ignore_errors=True)
                raise RunFolderError(
                    f"could not move the new run into {out} ({err.strerror or err}: {err.filename}); "
                    f"{out} is as it was and the new run is in {stage}"
                ) from None
        stage.rmdir()
        shutil.rmtree(old)


@contextlib.contextmanager
def signals_ignored():
    """Ignore SIGINT, SIGTERM and SIGHUP inside the block (in the main thread, the only one
    that can set handlers), then restore the handlers there were."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.signal(getattr(signal, n), signal.SIG_IGN) for n in names}
    try:
        yield
    finally:
        for n, handler in previous.items():
            signal.signal(getattr(signal, n), signal.SIG_DFL if handler is None else handler)
