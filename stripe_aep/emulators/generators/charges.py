"""Charges of the emulated account (`/v1/charges`).

A charge is made with everything it causes: its balance transaction (when captured), its planned
refunds, capture or asynchronous success, and the dispute a few of them get (generators/disputes.py).
The work is `_Generator.make_charge`, which shares the generator's templates and random streams
with the refunds and balance transactions it makes; this module is its entry point.
"""

from __future__ import annotations

from typing import Any


def make(generator: Any, created: int) -> None:
    """One charge created at `created` (and what follows from it)."""
    generator.make_charge(created)
