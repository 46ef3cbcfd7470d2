"""The database's files are private to their owner: transcripts are nobody else's business.

SQLite creates a database's ``-wal`` and ``-shm`` files with the database file's own mode, so
a database created private stays private; one an older clawgate created readable by all is
made private when opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE = 0o600


def create_private(path: Path) -> None:
    """Create ``path`` empty and private if it does not exist (an existing file is untouched)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE))


def make_private(path: Path) -> None:
    """Take every permission but the owner's read and write from the database's files."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if stat.S_IMODE(file.stat().st_mode) != PRIVATE:
                file.chmod(PRIVATE)
        except FileNotFoundError:
            continue
        except OSError as exc:  # another user's file: say so, and carry on
            log.warning("could not make %s private: %s", file, exc)
