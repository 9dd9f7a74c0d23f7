"""Prices of the emulated account (`/v1/prices`).

5 % as many prices as charges a day, made by `_Generator.make_price`: recurring and one-time,
30 % inactive (hidden by the list's default `active=true`), in several currencies; some are
deactivated or deleted later (`_Generator.plan_price_changes`). This module is their entry point.
"""

from __future__ import annotations

from typing import Any


def make(generator: Any, created: int, force_recurring_active: bool = False) -> None:
    """One price created at `created` (the account's first is recurring and active)."""
    generator.make_price(created, force_recurring_active=force_recurring_active)


def plan_changes(generator: Any) -> None:
    """The prices' deactivations and deletions over time (after every object is made)."""
    generator.plan_price_changes()
