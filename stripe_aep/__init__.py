"""stripe-aep: Stripe → XDM Parquet → Adobe Experience Platform, as a Dagster project.

The one place where the project silences Dagster warnings, deliberately and narrowly: each filter
names a beta/preview parameter this project uses on purpose, so its warning is noise nobody can act
on (18 copies at every start of the webserver, the daemon and each run). Any other Dagster warning —
a new beta parameter, a deprecation — still shows.

* `backfill_policy` of `@asset` (beta since 1.5): every asset uses `BackfillPolicy.multi_run`, so a
  UI backfill of months runs as a few range runs instead of one run per day (see partitions.py).

No `import dagster` here (the plain-Python clients must stay light): the filters match the message
text, whatever the warning's class.
"""

import warnings

#: The start of each silenced warning's message (see the module docstring for why each is safe).
SILENCED_DAGSTER_WARNINGS = (
    r"Parameter `backfill_policy` of function `asset` is currently in beta",
)

for _message in SILENCED_DAGSTER_WARNINGS:
    warnings.filterwarnings("ignore", message=_message)
