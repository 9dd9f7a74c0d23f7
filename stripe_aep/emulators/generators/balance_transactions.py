"""Balance transactions of the emulated account (`/v1/balance_transactions`).

Most are made by what moves money: a captured charge (`charge`), a refund (`refund`), a dispute's
withdrawal and reinstatement (`adjustment`, reporting categories `dispute` / `dispute_reversal`).
Each day also gets a payout, a Stripe fee and, often, a manual adjustment: those are made here
through `_Generator.make_other_txn`. All of them are rendered by `_Generator.add_txn`, pending
until `available_on` (two days later at 00:00 UTC), then available.
"""

from __future__ import annotations

from typing import Any

#: The balance transactions of no charge, refund or dispute that each day gets.
DAILY_KINDS = ("payout", "adjustment", "stripe_fee")


def make(generator: Any, kind: str, created: int) -> None:
    """One balance transaction of `kind` (one of `DAILY_KINDS`) at `created`."""
    generator.make_other_txn(kind, created)
