"""Which pickle files dagrun agrees to load.

Unpickling runs code, so like ``ssh`` with key files dagrun loads a pickle only when it is
owned by the current user and neither group nor others can write it. dagrun creates its files
that way (``dagrun.disk.atomic``). Teams that share one group-writable folder can opt out with the
environment variable ``DAGRUN_TRUST_GROUP=1``: then files owned by anyone, and writable by
the group, are accepted; world-writable files are still refused.
"""

from __future__ import annotations

import os
import stat

from dagrun.errors import UnsafePickleError

TRUST_GROUP_ENV = "DAGRUN_TRUST_GROUP"


def trust_group() -> bool:
    return os.environ.get(TRUST_GROUP_ENV, "") not in ("", "0", "false", "no")


def check_pickle(path: str) -> None:
    """Raise ``UnsafePickleError`` unless ``path`` is safe to unpickle (see module doc)."""
    st = os.stat(path)
    if st.st_mode & stat.S_IWOTH:
        raise UnsafePickleError(
            f"refusing to load {path}: it is writable by everyone "
            f"(fix: chmod o-w {_quote(path)})"
        )
    if trust_group():
        return
    if st.st_uid != os.geteuid():
        raise UnsafePickleError(
            f"refusing to load {path}: it is owned by uid {st.st_uid}, not by you "
            f"(uid {os.geteuid()}); check where it came from, then take it over "
            f"(fix: cp {_quote(path)} {_quote(path + '.mine')} && "
            f"mv {_quote(path + '.mine')} {_quote(path)}) or set {TRUST_GROUP_ENV}=1 for a "
            "shared team folder"
        )
    if st.st_mode & stat.S_IWGRP:
        raise UnsafePickleError(
            f"refusing to load {path}: it is writable by its group "
            f"(fix: chmod g-w {_quote(path)}, or set {TRUST_GROUP_ENV}=1 for a shared team folder)"
        )


def _quote(path: str) -> str:
    import shlex

    return shlex.quote(path)
