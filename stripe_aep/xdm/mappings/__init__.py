"""One XDM mapping module per Stripe resource (`<resource>.py`, each exposing `MAPPING`).

Why these classes and identities, across the resources (each module's docstring gives its own
reasoning, rendered into `docs/xdm-mapping.md`):

- What happens at a moment (a charge, a refund, a balance transaction, a dispute) never describes
  a person's current state, so it is an XDM ExperienceEvent (time-series): it lands in the
  profile's event timeline and is a CJA event dataset. Where XDM has standard commerce fields
  (order total, currency, payments with type and amount, the purchases measure) they are filled,
  so Adobe's standard commerce reports and segments work without custom mapping.
- Long-lived objects a customer can hold several of (subscriptions, invoices) are
  ExperienceEvents too: a record keyed by the customer identity would merge them into one profile
  fragment (the last one would win). As events, every observed state is its own entry in the
  customer's timeline (a changed state has a new deterministic `_id`), segmentable ("has an
  active subscription to price X") and analysable in CJA. Their event time is the latest datable
  lifecycle moment, always in the past as XDM requires.
- A customer is a person: XDM Individual Profile (record). Something that belongs to no person (a
  price) is a record of a custom class, used as a CJA lookup dataset, not Profile-enabled.
- Every object that belongs to a customer carries the customer id as its primary identity
  (namespace `StripeCustomerId`), so Profile stitches it to the customer's profile; objects that
  belong to the Stripe account (balance transactions) carry none.

The resource's name, its Stripe object and its class are the catalog's (`stripe_aep/catalog.py`);
`stripe_aep.xdm.resources.mapping_for(name)` binds a module's `MAPPING` to them.
"""
