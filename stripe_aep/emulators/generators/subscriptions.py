"""Subscriptions of the emulated account (`/v1/subscriptions`).

10 % as many subscriptions as charges a day, made by `_Generator.make_subscription` on a
recurring price and a customer that exist by then, in every status (a quarter canceled, hidden by
the list's default) with the way to it planned as `customer.subscription.updated` / `.deleted`
events; each also gets its invoices (generators/invoices.py). This module is their entry point.
"""

from __future__ import annotations

from typing import Any


def make(generator: Any, created: int) -> None:
    """One subscription created at `created`, with its planned changes and invoices."""
    generator.make_subscription(created)
