"""Refunds of the emulated account (`/v1/refunds`).

Refunds are planned by their charge (full, partial or two partial ones, minutes to days after the
charge) and made with their own balance transaction by `_Generator.make_refund`; each refund
also plans the charge's `charge.refunded`. This module is the entry point `make_charge` calls.
"""

from __future__ import annotations

from typing import Any


def make(generator: Any, created: int, amount: int, currency: str, charge_id: str,
         payment_intent: str, payment_method: str, customer: str | None, bnpl: str | None,
         rate: float | None) -> None:  # fmt: skip
    """One succeeded refund of `amount` on `charge_id` at `created`, and its balance transaction."""
    generator.make_refund(created, amount, currency, charge_id, payment_intent, payment_method,
                          customer, bnpl, rate)  # fmt: skip
