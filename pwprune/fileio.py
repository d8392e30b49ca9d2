"""Atomic file writes, the one way every pwprune output reaches disk.

A job killed at any moment (SIGKILL, a lost node) must leave nothing that a later run could take
for a finished result: data goes to a temporary file beside the target, is flushed and fsynced,
and only then renamed over the target (os.replace within one directory is atomic). The target
name therefore holds either its old bytes or the complete new ones. Torch-free on purpose.
"""

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb"):
    """Yield a file object (mode "wb" or "w") whose contents replace `path` on a clean exit; on
    an error the temporary file is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # make the rename itself durable
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
