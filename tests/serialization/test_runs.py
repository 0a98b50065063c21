"""Run folders' lock (``numformer.serialization.runs``): one writer at a time, and a lock file
its holder removed is no lock (issue 36, item 8: ``numformer train`` and the apps share it)."""

from __future__ import annotations

import fcntl

import pytest

from numformer.serialization.runs import LOCK, RunFolder, RunFolderError


def test_one_writer_at_a_time_and_a_removed_lock_file_locks_nothing(tmp_path):
    folder = RunFolder(tmp_path / "run", ("run.json",))
    with folder.lock("'numformer train'"):
        with pytest.raises(RunFolderError, match="another 'numformer train' is writing into"):
            with RunFolder(tmp_path / "run", ("run.json",)).lock("'numformer train'"):
                pass
        stale = open(tmp_path / "run" / LOCK)  # noqa: SIM115 - what a second process opened just before
        folder.remove_lock()  # the holder of a failed first run cleans up
    try:
        fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the removed file can still be locked...
        assert not folder._holds(stale)  # ...but it is not the lock, so lock() takes the file at the path
        with folder.lock():
            assert (tmp_path / "run" / LOCK).exists()
    finally:
        stale.close()
