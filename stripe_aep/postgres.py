"""Connecting to the PostgreSQL database `STRIPE_AEP_LEDGER_URL` names, for the ledger, the partition
locks and the Stripe budgets; and the advisory-lock keys they share.

Why one module: the three share a database, a driver (psycopg 3, the optional `postgres` extra) and
one rule — the URL may carry a password, and psycopg puts the connection string into some of its
error messages, so connection errors are rebuilt here with the password masked and nothing chained.
Plain Python, no Dagster imports.
"""

from __future__ import annotations

import hashlib
from typing import Any


class PostgresUnavailable(RuntimeError):
    """The database cannot be reached or the driver is missing; the message names the fix."""


def advisory_key(namespace: str, name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory-lock functions.

    Derived from SHA-256 in Python rather than the server's `hashtext` (undocumented, and free to
    change between PostgreSQL major versions), so every process, on any server, agrees on it.
    """
    digest = hashlib.sha256(f"stripe-aep/{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def pg_connect(url: str, *, what: str, connect_timeout_s: int = 10) -> Any:
    """A psycopg 3 connection (autocommit, rows as dicts); its errors never show the password."""
    from stripe_aep.config import LEDGER_URL_VARIABLE, parse_ledger_url

    target = parse_ledger_url(url)
    try:
        import psycopg
        from psycopg.rows import dict_row
    except ImportError:  # pragma: no cover - the `postgres` extra is part of `make install`
        raise PostgresUnavailable(
            f"the {what} is on PostgreSQL ({target.shown}) but the psycopg driver is not "
            "installed: pip install 'stripe-aep[postgres]'"
        ) from None
    try:
        return psycopg.connect(
            url, autocommit=True, row_factory=dict_row, connect_timeout=connect_timeout_s
        )
    except psycopg.Error as exc:
        text = target.mask(str(exc)).strip()
        raise PostgresUnavailable(
            f"cannot connect to the {what} database {target.shown}: {text}. Check "
            f"{LEDGER_URL_VARIABLE} (host, port, database, user, password) and that the server "
            "accepts connections from this machine"
        ) from None
