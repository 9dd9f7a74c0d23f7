"""Customers of the emulated account (`/v1/customers`).

About 30 % as many customers as charges a day, made by `_Generator.make_customer` (names and
addresses from many countries and scripts, some without email or name); about 3 % are edited and
1.5 % deleted later (`_Generator.plan_customer_changes`). This module is their entry point.
"""

from __future__ import annotations

from typing import Any


def make(generator: Any, created: int) -> None:
    """One customer created at `created`."""
    generator.make_customer(created)


def plan_changes(generator: Any) -> None:
    """The customers' edits and deletions over time (after every object is made)."""
    generator.plan_customer_changes()
