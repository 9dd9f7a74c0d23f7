"""Stripe money: integer minor units, currency exponents, exact major amounts.

Why this module exists: Stripe sends every amount as an integer in the currency's minor unit and the
currency as a lower-case ISO 4217 code. XDM has no decimal type, so the XDM major amount is a
`number` (Parquet DOUBLE). We never compute it with float arithmetic on floats: the minor integer is
kept as `long`, the exact decimal text is built with integer arithmetic, and the double is the
correctly rounded IEEE-754 quotient `minor / 10**exponent` (one rounding, identical to
`float(Decimal(minor).scaleb(-exponent))`). Everything here is vectorised with pyarrow; the scalar
helpers exist for tests, documentation and the slow diagnostic path.

Exponent rule (Stripe's currency documentation, see `docs/xdm-mapping.md`):
- zero-decimal currencies: exponent 0 (10 JPY is sent as 10);
- ISK and UGX: Stripe's "special cases" — zero-decimal in reality but represented as two-decimal
  values whose decimals are always 00, so exponent 2 (500 means 5 ISK);
- three-decimal currencies BHD, JOD, KWD, OMR, TND: exponent 3;
- every other currency: exponent 2.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Stripe's zero-decimal list minus the two special cases (ISK, UGX) that Stripe represents with two
# decimals for backward compatibility.


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


ZERO_DECIMAL: frozenset[str] = _codes("bif clp djf gnf jpy kmf krw mga pyg rwf vnd vuv xaf xof xpf")
SPECIAL_TWO_DECIMAL: frozenset[str] = frozenset({"isk", "ugx"})
THREE_DECIMAL: frozenset[str] = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})

# Presentment currencies Stripe lists (docs.stripe.com/currencies), lower case as the API sends them,
# plus the three-decimal currencies. A currency outside this list cannot be converted exactly (its
# exponent is unknown), so such records are quarantined with reason `unknown_currency`.
STRIPE_CURRENCIES: frozenset[str] = _codes(
    """
    usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp byn
    bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd gnf
    gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt lak lbp lkr
    lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd omr pab pen
    pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sll sos srd std szl thb tjs
    tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw
    """
)

#: Largest |minor| for which `round(major_double * 10**exponent) == minor` is guaranteed (2**50):
#: the double carries at most two roundings of relative size 2**-53 each.
EXACT_ROUND_TRIP_LIMIT = 2**50


def currency_exponent(currency: str) -> int:
    """Number of decimal places of `currency` in Stripe's integer amounts (case-insensitive)."""
    code = currency.lower()
    if code not in STRIPE_CURRENCIES:
        raise ValueError(
            f"unknown currency {currency!r}: not in Stripe's currency list; add it to "
            "stripe_aep.xdm.money.STRIPE_CURRENCIES with its exponent if Stripe supports it"
        )
    if code in THREE_DECIMAL:
        return 3
    if code in ZERO_DECIMAL:
        return 0
    return 2


def major_decimal(minor: int, currency: str) -> Decimal:
    """Exact major amount as a Decimal (e.g. 1099 usd -> Decimal('10.99'))."""
    return Decimal(minor).scaleb(-currency_exponent(currency))


def major_text(minor: int, currency: str) -> str:
    """Exact major amount as plain decimal text with exactly `exponent` decimals ('-4.00')."""
    exp = currency_exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}" if exp else f"{sign}{whole}"


_CODES = sorted(STRIPE_CURRENCIES)
_CODE_ARRAY = pa.array(_CODES, pa.string())
_EXPONENTS = np.array([currency_exponent(c) for c in _CODES], dtype=np.int64)


def exponents_for(currency: pa.Array) -> pa.Array:
    """Vectorised exponent per row (int64; null where the currency is null or unknown).

    Accepts lower- or upper-case codes.
    """
    idx = pc.index_in(pc.utf8_lower(currency), value_set=_CODE_ARRAY)
    return pc.take(pa.array(_EXPONENTS), idx)


def is_known_currency(currency: pa.Array) -> pa.Array:
    """Vectorised: True where the currency is in Stripe's list, False where unknown, null if null."""
    return pc.is_in(pc.utf8_lower(currency), value_set=_CODE_ARRAY, skip_nulls=False)


def major_double(minor: pa.Array, exponent: pa.Array) -> pa.Array:
    """Vectorised correctly rounded `minor / 10**exponent` as float64 (null propagates)."""
    scale = pc.power(pa.scalar(10.0), pc.cast(exponent, pa.float64()))
    return pc.divide(pc.cast(minor, pa.float64()), scale)


def major_text_array(minor: pa.Array, exponent: pa.Array) -> pa.Array:
    """Vectorised exact decimal text of `minor / 10**exponent` built with integer arithmetic."""
    minor = pc.cast(minor, pa.int64())
    exponent = pc.cast(exponent, pa.int64())
    magnitude = pc.abs(minor)
    scale = pc.power(pa.scalar(10, pa.int64()), exponent)
    whole = pc.divide(magnitude, scale)  # integer division (both int64, non-negative)
    frac = pc.subtract(magnitude, pc.multiply(whole, scale))
    sign = pc.if_else(pc.less(minor, 0), "-", "")
    whole_text = pc.binary_join_element_wise(sign, pc.cast(whole, pa.string()), "")
    result = whole_text
    for exp in (2, 3):
        padded = pc.utf8_lpad(pc.cast(frac, pa.string()), width=exp, padding="0")
        with_frac = pc.binary_join_element_wise(whole_text, padded, ".")
        result = pc.if_else(pc.equal(exponent, exp), with_frac, result)
    return result
