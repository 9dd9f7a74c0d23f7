"""A real crash at a named point of delivery: the callback the crash tests give `deliver`.

`deliver(..., on_checkpoint=...)` calls back at its checkpoints (stripe_aep/aep/deliver.py's module
docstring names them). `sigkill_at(point)` returns a callback that SIGKILLs its own process when
delivery reaches `point`, so a test can prove recovery from a process that really died there
(no `finally`, no ledger flush, an open batch in AEP).
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable

#: The checkpoints `deliver` reports (`after_upload:<n>` for the n-th file uploaded by the call).
CHECKPOINTS = (
    "after_create_before_ledger",
    "after_create",
    "after_upload:<n>",
    "after_complete_before_ledger",
    "while_polling",
)
_POINT = re.compile(
    r"after_create_before_ledger|after_create|after_upload:[1-9][0-9]*"
    r"|after_complete_before_ledger|while_polling"
)


def sigkill_at(point: str | None) -> Callable[[str], None] | None:
    """A checkpoint callback that SIGKILLs this process at `point`; None for no crash."""
    if not point:
        return None
    if not _POINT.fullmatch(point):
        raise ValueError(
            f"{point!r} is not a delivery checkpoint (one of {', '.join(CHECKPOINTS)})"
        )

    def on_checkpoint(name: str) -> None:
        if name == point:
            os.kill(os.getpid(), signal.SIGKILL)

    return on_checkpoint
