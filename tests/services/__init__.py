"""Real services the tests start and stop themselves (sshd, network namespaces, a Ray head)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # typing.Self is Python 3.11+; dagrun supports 3.10
    from typing_extensions import Self

REQUIRE_ENV = "DAGRUN_REQUIRE_SERVICES"


def require_service(reason: str | None, *, module_level: bool = False) -> None:
    """Skip with ``reason`` when a service is unavailable, or fail instead when
    ``DAGRUN_REQUIRE_SERVICES=1`` (set by CI, where every service test must run)."""
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


class Service:
    """What every test service shares: ``with Service(...) as s`` starts it, and leaving the
    block stops it (also after an error)."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
