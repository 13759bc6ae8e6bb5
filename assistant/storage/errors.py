"""What can go wrong with an index, said so that the user knows what to do.

Apart from the code that opens index files, so that serving code can catch
and word these errors without reaching into storage.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

FIX = "Run `python -m assistant build` (or `make run`, which builds when needed)."

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class StoreError(RuntimeError):
    """The index is missing, damaged or incompatible; the message says how to fix it."""


class WriteError(StoreError):
    """The index folder cannot be written (full disk, no permission); the previous index is unchanged."""

    def __init__(self, root: Path, exc: OSError) -> None:
        self.root = root
        self.disk_full = _out_of_space(root, exc)
        reason = "not enough disk space" if self.disk_full else "cannot write the index"
        super().__init__(
            f"{reason} in '{root}' ({exc.strerror or exc}); the previous index is unchanged and still answers."
        )


def _out_of_space(root: Path, exc: OSError) -> bool:
    """numpy reports a short write without an errno; then the space left tells."""
    if exc.errno is not None:
        return exc.errno in DISK_FULL
    try:
        return shutil.disk_usage(root).free < 1 << 20
    except OSError:
        return False
