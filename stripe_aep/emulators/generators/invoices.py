"""Invoices of the emulated account (`/v1/invoices`): one per subscription billing period.

Every subscription gets an invoice when it starts (`billing_reason` `subscription_create`; a
zero-amount one when it starts with a trial) and one at the start of each later billing period
before it ends or the account's horizon (`subscription_cycle`). An invoice is Stripe's sample
`invoice` with the subscription's customer (and their email, name, address, phone), currency,
`collection_method`, one line with the subscription item's price, quantity, amount and period,
and `parent.subscription_details` naming the subscription.

Lifecycle (docs.stripe.com/invoicing/overview, "Invoice lifecycle"; the `invoice.*` events): an
invoice is created `draft` (`invoice.created`) and finalized — at once for a subscription's first
invoice, about an hour later for a renewal (docs.stripe.com/billing/subscriptions/overview) —
which makes it `open` with a `number` (`invoice.finalized`). Then, by the subscription's fate:

* paid: automatic collection pays it at finalization (`invoice.paid`), a `send_invoice` customer
  pays within its 30 days (`due_date`) or not yet;
* a subscription heading for `past_due` / `unpaid`, or `incomplete`: the payment attempt fails
  (`invoice.payment_failed`, still `open`); for `unpaid` the invoice is then marked uncollectible
  (`invoice.marked_uncollectible`);
* a subscription canceled after a failed payment, or expiring `incomplete_expired`: its open
  invoice is voided (`invoice.voided`);
* some `send_invoice` drafts get a memo before they are finalized (`invoice.updated`).

No invoice is deleted: only one-off drafts can be (docs.stripe.com/api/invoices/delete), and
every invoice here is a subscription's. Values come from a random stream of their own
(`<seed>:invoices`), so adding invoices changed no other object of an account.
"""

from __future__ import annotations

import random
from typing import Any

from stripe_aep.catalog import stripe_resource
from stripe_aep.emulators.stripe_account import _ID_TABLE, DAY, _add_interval, dump_object
from stripe_aep.emulators.stripe_events import apply_to
from stripe_aep.specs import stripe as stripe_specs

RESOURCE = stripe_resource("invoices")
#: Stripe finalizes a renewal invoice about an hour after creating it.
RENEWAL_FINALIZE_DELAY = 3600
NO_TRANSITIONS = {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None,
                  "voided_at": None}  # fmt: skip


class InvoiceMaker:
    """Makes the account's invoices during generation (one `_Generator`, one seeded stream)."""

    def __init__(self, generator: Any) -> None:
        self.generator = generator
        self.rng = random.Random(f"{generator.account.seed}:invoices")
        sample = stripe_specs.sample_object("invoice", stripe_specs.newest_vendored_version())
        sample.update(
            account_name="Stripe Emulator", amount_overpaid=0, from_invoice=None,
            last_finalization_error=None, shipping_cost=None, shipping_details=None,
            customer_shipping=None, webhooks_delivered_at=None, total_pretax_credit_amounts=[],
            total_taxes=[], livemode=False,
            automatic_tax={"enabled": False, "liability": None, "status": None,
                           "disabled_reason": None, "provider": None},
        )  # fmt: skip
        self.sample = sample
        self.line_sample = sample["lines"]["data"][0]
        self.sequence: dict[str, int] = {}  # customer id -> invoices numbered so far

    def new_id(self, prefix: str) -> str:
        return prefix + self.rng.randbytes(24).translate(_ID_TABLE).decode()

    def for_subscription(self, sub: dict[str, Any]) -> None:
        """The invoices of one subscription and their planned lifecycle.

        `sub` holds: id, created, first_invoice (its `latest_invoice` id), customer (the
        generator's customer record), invoice_prefix, price (price record), quantity, item_id,
        collection_method, days_until_due, trial_end, anchor, target (the status it heads for),
        ends_at (when it ends, or None), failed_at / unpaid_at (planned status changes, or None).
        """
        gen = self.generator
        horizon = gen.horizon
        price = sub["price"]
        ends_at = sub["ends_at"]
        stop = horizon if ends_at is None else min(horizon, ends_at)
        starts = [sub["created"]]
        boundary = sub["anchor"] if sub["trial_end"] is not None else sub["created"]
        if sub["trial_end"] is not None:
            starts.append(boundary)
        while True:
            boundary = _add_interval(boundary, price.interval, price.interval_count)
            if boundary >= stop:
                break
            starts.append(boundary)
        # The first invoice always exists (it is the subscription's `latest_invoice`), even for
        # a subscription ended in its creation second.
        starts = starts[:1] + [start for start in starts[1:] if start < stop]
        for number, start in enumerate(starts):
            following = (
                starts[number + 1]
                if number + 1 < len(starts)
                else _add_interval(start, price.interval, price.interval_count)
            )
            if start == following:  # a trial that ends at once: no separate period
                continue
            self.make(sub, number, start, following, starts[number - 1] if number else start)

    def make(self, sub: dict[str, Any], number: int, start: int, period_end: int,
             previous_start: int) -> None:  # fmt: skip
        gen = self.generator
        price, customer, quantity = sub["price"], sub["customer"], sub["quantity"]
        trial = number == 0 and sub["trial_end"] is not None
        amount = 0 if trial else price.unit_amount * quantity
        invoice_id = sub["first_invoice"] if number == 0 else self.new_id(RESOURCE.id_prefix)
        created = start
        send_invoice = sub["collection_method"] == "send_invoice"
        finalize_at = created + (1 if number == 0 else RENEWAL_FINALIZE_DELAY)
        # Invoices sent for payment often carry the buyer's purchase-order number (about half of
        # them; drawn from the id, so the random stream of the lifecycles stays as it was).
        tagged = send_invoice and invoice_id[-1] < "V"  # 31 of the 62 id characters
        metadata = {"po_number": f"PO-{invoice_id[-5:].upper()}"} if tagged else {}
        due_date = finalize_at + sub["days_until_due"] * DAY if send_invoice else None
        line = dict(self.line_sample)
        line.update(
            amount=amount, currency=price.currency,
            description=(f"Trial period for {price.nickname or 'Subscription'}" if trial else
                         f"{quantity} × {price.nickname or 'Subscription'}"),
            discount_amounts=[], discountable=True, discounts=[],
            id=self.new_id("il_"), invoice=invoice_id, metadata={},
            period={"end": period_end, "start": start}, quantity=quantity,
            subscription=sub["id"], pretax_credit_amounts=[], taxes=[],
            parent={"invoice_item_details": None,
                    "subscription_item_details": {
                        "invoice_item": None, "proration": False,
                        "proration_details": {"credited_items": None},
                        "subscription": sub["id"], "subscription_item": sub["item_id"]},
                    "type": "subscription_item_details"},
            pricing={"price_details": {"price": price.id, "product": price.product},
                     "type": "price_details", "unit_amount_decimal": str(price.unit_amount)},
            subtotal=amount, quantity_decimal=str(quantity),
        )  # fmt: skip
        document = dict(self.sample)
        document.update(
            amount_due=amount, amount_paid=0, amount_remaining=amount, attempt_count=0,
            attempted=False, auto_advance=True,
            billing_reason="subscription_create" if number == 0 else "subscription_cycle",
            collection_method=sub["collection_method"], created=created,
            currency=price.currency, customer=customer.id,
            customer_address=customer.address, customer_email=customer.email,
            customer_name=customer.name, customer_phone=customer.phone,
            description=None, due_date=due_date, effective_at=None, ending_balance=None,
            hosted_invoice_url=None, id=invoice_id, invoice_pdf=None,
            lines={"data": [line], "has_more": False, "object": "list",
                   "url": f"/v1/invoices/{invoice_id}/lines"},
            metadata=metadata, next_payment_attempt=None if send_invoice else finalize_at,
            number=None,
            parent={"quote_details": None,
                    "subscription_details": {"metadata": {}, "subscription": sub["id"]},
                    "type": "subscription_details"},
            period_end=start, period_start=previous_start, status="draft",
            status_transitions=dict(NO_TRANSITIONS), subscription=sub["id"],
            subtotal=amount, subtotal_excluding_tax=amount, total=amount,
            total_discount_amounts=[], total_excluding_tax=amount,
            automatically_finalizes_at=finalize_at if number else None,
        )  # fmt: skip
        planned = len(gen.plans)
        self._plan_lifecycle(sub, invoice_id, created, finalize_at, amount, send_invoice)
        # The steps already due at generation are applied here, before the one serialization
        # (the account's Timeline skips applied mutations): parsing and re-serializing every
        # invoice afterwards would cost more than making it.
        for mutation in gen.plans[planned:]:
            if mutation.time <= gen.now:
                apply_to(document, mutation)
        gen.add(RESOURCE.name, created, invoice_id, dump_object(document),
                (customer.id, sub["id"], document["status"], sub["collection_method"]))  # fmt: skip

    def _plan_lifecycle(self, sub: dict[str, Any], invoice_id: str, created: int,
                        finalize_at: int, amount: int, send_invoice: bool) -> None:  # fmt: skip
        gen, rng = self.generator, self.rng
        horizon = gen.horizon

        def plan(when: int, type: str, changes: dict[str, Any]) -> None:
            gen.plan(when, RESOURCE.name, invoice_id, type, changes, rng=rng)

        if send_invoice and rng.random() < 0.3:
            memo_at = created + rng.randint(1, max(1, finalize_at - created - 1))
            if memo_at < finalize_at and memo_at < horizon:
                plan(memo_at, "invoice.updated", {"description": "Thank you for your business."})
        if finalize_at >= horizon:
            return
        customer = sub["customer"]
        sequence = self.sequence[customer.id] = self.sequence.get(customer.id, 0) + 1
        transitions = dict(NO_TRANSITIONS, finalized_at=finalize_at)
        plan(finalize_at, "invoice.finalized", {
            "status": "open", "number": f"{sub['invoice_prefix']}-{sequence:04d}",
            "effective_at": finalize_at, "ending_balance": 0, "automatically_finalizes_at": None,
            "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_emulator/{invoice_id[3:]}",
            "invoice_pdf": f"https://pay.stripe.com/invoice/acct_emulator/{invoice_id[3:]}/pdf",
            "status_transitions": transitions,
        })  # fmt: skip
        failed_at, unpaid_at, ends_at = sub["failed_at"], sub["unpaid_at"], sub["ends_at"]
        target = sub["target"]
        # A subscription whose payment fails (past_due, unpaid, canceled for it, incomplete):
        # its invoice open at the failure and every later one fail.
        fails = amount > 0 and not send_invoice and (
            target in ("incomplete", "incomplete_expired") or failed_at is not None
        )  # fmt: skip
        if fails:
            failed = max(finalize_at, failed_at or finalize_at)
            if failed >= horizon:
                return
            plan(failed, "invoice.payment_failed", {
                "attempted": True, "attempt_count": 1,
                "next_payment_attempt": None if target.startswith("incomplete")
                else failed + 3 * DAY,
            })  # fmt: skip
            if target == "unpaid" and unpaid_at is not None and unpaid_at < horizon:
                plan(max(unpaid_at, failed), "invoice.marked_uncollectible", {
                    "status": "uncollectible", "next_payment_attempt": None,
                    "status_transitions": dict(transitions,
                                               marked_uncollectible_at=max(unpaid_at, failed)),
                })  # fmt: skip
            elif ends_at is not None and ends_at < horizon and target != "unpaid":
                voided = max(ends_at, failed)
                plan(voided, "invoice.voided", {
                    "status": "void", "next_payment_attempt": None,
                    "status_transitions": dict(transitions, voided_at=voided),
                })  # fmt: skip
            return
        if send_invoice and failed_at is not None:
            # Not paid by a customer whose subscription falls behind; uncollectible once unpaid.
            if target == "unpaid" and unpaid_at is not None and finalize_at <= unpaid_at < horizon:
                plan(unpaid_at, "invoice.marked_uncollectible", {
                    "status": "uncollectible",
                    "status_transitions": dict(transitions, marked_uncollectible_at=unpaid_at),
                })  # fmt: skip
            return
        if send_invoice:
            if amount and rng.random() >= 0.7:
                return  # not paid yet
            paid_at = finalize_at + (rng.randint(3600, 10 * DAY) if amount else 0)
        else:
            paid_at = finalize_at
        if paid_at >= horizon:
            return
        plan(paid_at, "invoice.paid", {
            "status": "paid", "amount_paid": amount, "amount_remaining": 0,
            "attempted": True, "attempt_count": 1 if amount and not send_invoice else 0,
            "next_payment_attempt": None,
            "status_transitions": dict(transitions, paid_at=paid_at),
        })  # fmt: skip


def make(generator: Any, subscription: dict[str, Any]) -> None:
    """The invoices of one subscription (`InvoiceMaker.for_subscription`)."""
    generator.invoice_maker.for_subscription(subscription)
