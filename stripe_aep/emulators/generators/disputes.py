"""Disputes of the emulated account (`/v1/disputes`): a few card payments are disputed days later.

About 0.6 % of the captured card charges without refunds are disputed one to six days after the
charge. A dispute is an object of its own (`dp_…`, Stripe's sample `dispute` with the charge's
amount, currency, `charge` and `payment_intent`), announced by `charge.dispute.created`; its
charge's `disputed` turns true at that moment without an event of the charge's own (the pipeline
re-reads the charge on `charge.dispute.created`, as Stripe sends no `charge.updated` for it).

Lifecycle (docs.stripe.com/disputes/how-disputes-work, the dispute object's `status`):

* a chargeback (85 %) opens `needs_response`; Stripe withdraws the amount and a dispute fee at
  once: an `adjustment` balance transaction (reporting category `dispute`) listed in the
  dispute's `balance_transactions`, and `charge.dispute.funds_withdrawn`;
* evidence is submitted for most before `evidence_details.due_by` (`under_review`,
  `charge.dispute.updated`), and the issuer decides days later (`won` or `lost`,
  `charge.dispute.closed`); a won dispute gives the funds back (`adjustment`, category
  `dispute_reversal`, `charge.dispute.funds_reinstated`); with no evidence by `due_by` it is lost;
* an inquiry (15 %) opens `warning_needs_response`, withdraws nothing, and moves to
  `warning_under_review` and `warning_closed`.

Every step happens only when its time is before the account's horizon (planned mutations, as for
every other object). Values come from a random stream of their own (`<seed>:disputes`), so
adding disputes changed no other object of an account.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from stripe_aep.catalog import stripe_resource
from stripe_aep.emulators.stripe_account import _ID_TABLE, DAY, dump_object
from stripe_aep.specs import stripe as stripe_specs

RESOURCE = stripe_resource("disputes")
#: Share of the captured charges drawn for a dispute; those paid by card with no refund get one
#: (about 0.6 % of the captured charges).
DISPUTE_SHARE = 0.008
#: Stripe's dispute reasons (the dispute object's `reason`), weighted like a card shop's mix.
REASONS = (
    ("fraudulent", 35), ("product_not_received", 20), ("unrecognized", 12), ("duplicate", 8),
    ("subscription_canceled", 7), ("product_unacceptable", 7), ("credit_not_processed", 6),
    ("general", 5),
)  # fmt: skip
#: Card networks' reason codes per dispute reason (`payment_method_details.card.network_reason_code`).
NETWORK_REASON_CODES = {
    "visa": {"fraudulent": "10.4", "product_not_received": "13.1", "unrecognized": "10.4",
             "duplicate": "12.6.1", "subscription_canceled": "13.7", "product_unacceptable": "13.3",
             "credit_not_processed": "13.6", "general": "13.3"},
    "mastercard": {"fraudulent": "4837", "product_not_received": "4855", "unrecognized": "4863",
                   "duplicate": "4834", "subscription_canceled": "4841",
                   "product_unacceptable": "4853", "credit_not_processed": "4860",
                   "general": "4853"},
}  # fmt: skip
#: Stripe's dispute fee, in minor units of the settlement currency.
DISPUTE_FEE = 1500


def _sample() -> dict[str, Any]:
    return stripe_specs.sample_object("dispute", stripe_specs.newest_vendored_version())


def dispute_document(
    sample: dict[str, Any],
    dispute_id: str,
    created: int,
    charge: dict[str, Any],
    reason: str,
    inquiry: bool,
    due_by: int,
    balance_transactions: list[Any],
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The dispute at its creation, in the sample's key order. `charge` holds the charge's
    `id`, `amount`, `currency`, `payment_intent` and card `brand`."""
    brand = charge.get("brand") or "visa"
    document = dict(sample)
    document.update(
        id=dispute_id,
        amount=charge["amount"],
        balance_transactions=balance_transactions,
        charge=charge["id"],
        created=created,
        currency=charge["currency"],
        evidence_details={
            "due_by": due_by,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
            "enhanced_eligibility": {},
        },  # fmt: skip
        is_charge_refundable=inquiry,
        livemode=False,
        metadata=metadata or {},
        payment_intent=charge["payment_intent"],
        payment_method_details={
            "card": {
                "brand": brand,
                "case_type": "inquiry" if inquiry else "chargeback",
                "network_reason_code": NETWORK_REASON_CODES.get(brand, {}).get(reason),
                "network": brand,
            },
            "type": "card",
        },  # fmt: skip
        reason=reason,
        status="warning_needs_response" if inquiry else "needs_response",
        enhanced_eligibility_types=(
            ["visa_compelling_evidence_3"] if brand == "visa" and reason == "fraudulent" else []
        ),
    )
    return document


def _as_of(when: int, txn: dict[str, Any]) -> dict[str, Any]:
    """A balance transaction as the dispute shows it: as it was when the dispute last changed its
    `balance_transactions` (pending until `available_on`). The listed transaction becomes
    available by the clock; the dispute's copy keeps its status until the dispute changes, so
    that every event's snapshot is the same whenever the account was generated."""
    return dict(txn, status="available" if txn["available_on"] <= when else "pending")


def _due_by(created: int, days: int) -> int:
    """The end (23:59:59 UTC) of the day `days` after `created`: Stripe's evidence deadline."""
    return (created // DAY + days + 1) * DAY - 1


class DisputeMaker:
    """Makes the account's disputes during generation (one `_Generator`, one seeded stream)."""

    def __init__(self, generator: Any) -> None:
        self.generator = generator
        self.rng = random.Random(f"{generator.account.seed}:disputes")
        self.sample = _sample()
        self.reasons = [reason for reason, weight in REASONS for _ in range(weight)]

    def new_id(self, prefix: str) -> str:
        return prefix + self.rng.randbytes(24).translate(_ID_TABLE).decode()

    def later(self, after: int, low: int, high: int) -> int | None:
        """A time `low`..`high` s after `after`, before the horizon; None when there is no room."""
        when = after + self.rng.randint(low, max(low, high))
        return when if when < self.generator.horizon else None

    def open(
        self, created: int, charge: dict[str, Any], settle: tuple[str, int, float | None]
    ) -> None:
        """A dispute of `charge` opened at `created`, with its whole planned lifecycle."""
        gen, rng = self.generator, self.rng
        inquiry = rng.random() < 0.15
        reason = self.reasons[rng.randrange(len(self.reasons))]
        dispute_id = self.new_id(RESOURCE.id_prefix)
        due_by = _due_by(created, rng.choice((7, 10, 14, 21)))
        settle_currency, settle_amount, rate = settle
        withdrawal: list[Any] = []
        if not inquiry:
            withdrawal.append(_as_of(created, orjson.loads(gen.add_txn(
                self.new_id("txn_"), created, -settle_amount, settle_currency,
                f"Chargeback withdrawal for {charge['id']}", rate, DISPUTE_FEE, "adjustment",
                dispute_id, "dispute", fee_description="Dispute fee",
            ))))  # fmt: skip
        # Some merchants tag a dispute with their own case reference (most leave metadata empty);
        # drawn from the id, so the random stream of the lifecycles stays as it was.
        tagged = dispute_id[-1] in "0123456789ABCDEFGH"  # 18 of the 62 id characters: ~30 %
        metadata = {"case_reference": f"CB-{dispute_id[-6:].upper()}"} if tagged else {}
        document = dispute_document(self.sample, dispute_id, created, charge, reason, inquiry,
                                    due_by, withdrawal, metadata)  # fmt: skip
        gen.add(RESOURCE.name, created, dispute_id, dump_object(document),
                (charge["id"], charge["payment_intent"]))  # fmt: skip
        plan = self._plan
        # The charge shows the dispute from its creation on (no event of its own).
        gen.plan(created, "charges", charge["id"], "charge.dispute.created", {"disputed": True},
                 rng=rng, silent=True)  # fmt: skip
        if not inquiry:
            plan(created, dispute_id, "charge.dispute.funds_withdrawn")
        details = document["evidence_details"]
        prefix = "warning_" if inquiry else ""
        if rng.random() < 0.75:
            submitted = self.later(created, 3600, due_by - created - 1)
            if submitted is None:
                return
            plan(submitted, dispute_id, "charge.dispute.updated", {
                "status": f"{prefix}under_review",
                "evidence": dict(document["evidence"], product_description="Order as described",
                                 uncategorized_text="Delivery confirmed by the carrier."),
                "evidence_details": dict(details, has_evidence=True, submission_count=1),
            })  # fmt: skip
            decided = self.later(submitted, 2 * DAY, 12 * DAY)
            if decided is None:
                return
            won = rng.random() < 0.45
            status = "warning_closed" if inquiry else ("won" if won else "lost")
            plan(decided, dispute_id, "charge.dispute.closed", {"status": status})
            if won and not inquiry:
                reinstated = orjson.loads(gen.add_txn(
                    self.new_id("txn_"), decided, settle_amount, settle_currency,
                    f"Chargeback reversal for {charge['id']}", rate, 0, "adjustment",
                    dispute_id, "dispute_reversal",
                ))  # fmt: skip
                listed = [_as_of(decided, txn) for txn in (*withdrawal, reinstated)]
                plan(decided, dispute_id, "charge.dispute.funds_reinstated",
                     {"balance_transactions": listed})  # fmt: skip
        elif due_by + 1 < gen.horizon:
            # No evidence by the deadline: the dispute is lost (an inquiry just closes).
            plan(due_by + 1, dispute_id, "charge.dispute.closed", {
                "status": f"{prefix}closed" if inquiry else "lost",
                "evidence_details": dict(details, past_due=True),
            })  # fmt: skip

    def _plan(self, when: int, dispute_id: str, type: str, changes: dict | None = None) -> None:
        self.generator.plan(when, RESOURCE.name, dispute_id, type, changes, rng=self.rng)


def make(
    generator: Any, created: int, charge: dict[str, Any], settle: tuple[str, int, float | None]
) -> None:
    """A dispute of `charge` opened at `created` and its planned lifecycle (`DisputeMaker.open`)."""
    generator.dispute_maker.open(created, charge, settle)


def open_now(
    charge: dict[str, Any], now: int, new_id: Any, settle: tuple[str, int, float | None],
    add_txn: Any,
) -> dict[str, Any]:  # fmt: skip
    """A chargeback opened now on `charge` (a parsed charge), for `StripeAccount.mutate`: the
    dispute document; `add_txn(txn_id, created, amount, currency, description, rate, fee, kind,
    source, category, fee_description)` makes its withdrawal and returns it parsed."""
    details = charge.get("payment_method_details") or {}
    brand = (details.get("card") or {}).get("brand")
    dispute_id = new_id(RESOURCE.id_prefix)
    settle_currency, settle_amount, rate = settle
    withdrawal = add_txn(new_id("txn_"), now, -settle_amount, settle_currency,
                         f"Chargeback withdrawal for {charge['id']}", rate, DISPUTE_FEE,
                         "adjustment", dispute_id, "dispute", "Dispute fee")  # fmt: skip
    return dispute_document(
        _sample(), dispute_id, now,
        {"id": charge["id"], "amount": charge["amount"], "currency": charge["currency"],
         "payment_intent": charge["payment_intent"], "brand": brand},
        "fraudulent", False, _due_by(now, 14), [withdrawal],
    )  # fmt: skip
