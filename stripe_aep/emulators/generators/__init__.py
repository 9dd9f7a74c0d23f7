"""The Stripe emulator's generators: one module per catalog resource (`StripeResource.emulator_module`).

Why: everything about one Stripe resource is declared once in `stripe_aep.catalog`; the objects
the emulated account holds for it are made by the module the catalog names, so adding a resource
means adding its stanza, its mapping module and its generator module here.

The account is generated in one pass over its days by `stripe_account._Generator`, which owns the
seeded random streams and the pre-serialized sample templates. Charges, refunds and balance
transactions are made together (a charge makes its balance transaction and its refunds, a refund
its own balance transaction), which is what keeps a million-object account fast to generate; the
modules of charges, refunds, balance transactions, customers, prices and subscriptions are the
documented entry points `_Generator` calls for each object, while `disputes` and `invoices` hold
their whole generation (objects and lifecycle).

Each module exposes `make(generator, ...)`, called by `_Generator` with itself as first argument.
"""
