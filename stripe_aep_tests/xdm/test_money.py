"""Money: exponents per Stripe's currency rules, exact major amounts, vectorised == scalar."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stripe_aep.xdm import money

CURRENCIES = sorted(money.STRIPE_CURRENCIES)
MINOR = st.integers(min_value=-(2**50), max_value=2**50)


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        ("usd", 2),
        ("EUR", 2),
        ("jpy", 0),
        ("krw", 0),
        ("xof", 0),
        ("isk", 2),
        ("ugx", 2),
        ("kwd", 3),
        ("bhd", 3),
        ("jod", 3),
        ("omr", 3),
        ("tnd", 3),
        ("huf", 2),
        ("twd", 2),
    ],
)
def test_exponents_follow_stripe_rules(currency, exponent):
    assert money.currency_exponent(currency) == exponent


def test_unknown_currency_error_names_the_fix():
    with pytest.raises(ValueError, match="unknown currency 'xyz'.*STRIPE_CURRENCIES"):
        money.currency_exponent("xyz")


@settings(max_examples=300, deadline=None)
@given(currency=st.sampled_from(CURRENCIES), minor=MINOR)
def test_major_times_ten_to_exponent_is_minor_exactly(currency, minor):
    exp = money.currency_exponent(currency)
    major = money.major_decimal(minor, currency)
    assert major * (Decimal(10) ** exp) == minor
    text = money.major_text(minor, currency)
    assert Decimal(text) * (Decimal(10) ** exp) == minor
    assert (len(text.split(".")[1]) if "." in text else 0) == exp


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(CURRENCIES), MINOR), min_size=1, max_size=40))
def test_vectorised_major_matches_exact_decimal(rows):
    currencies = pa.array([c.upper() if i % 2 else c for i, (c, _) in enumerate(rows)])
    minors = pa.array([m for _, m in rows], pa.int64())
    exps = money.exponents_for(currencies)
    doubles = money.major_double(minors, exps).to_pylist()
    texts = money.major_text_array(minors, exps).to_pylist()
    for (currency, minor), d, t in zip(rows, doubles, texts, strict=True):
        exact = money.major_decimal(minor, currency)
        assert t == money.major_text(minor, currency)
        assert Decimal(t) == exact
        # the double is the correctly rounded value of the exact decimal ...
        assert d == float(exact)
        # ... and gives the minor amount back exactly
        assert round(d * 10 ** money.currency_exponent(currency)) == minor


def test_vectorised_nulls_and_unknown_currency():
    exps = money.exponents_for(pa.array(["usd", None, "xyz", "JPY"]))
    assert exps.to_pylist() == [2, None, None, 0]
    known = money.is_known_currency(pa.array(["usd", "xyz", None]))
    assert known.to_pylist() == [True, False, False]
    texts = money.major_text_array(pa.array([-400, 5, None, 10]), exps)
    assert texts.to_pylist() == ["-4.00", None, None, "10"]


def test_three_decimal_and_special_cases_text():
    assert money.major_text(5120, "kwd") == "5.120"
    assert money.major_text(500, "isk") == "5.00"
    assert money.major_text(500, "ugx") == "5.00"
    assert money.major_text(10, "jpy") == "10"
    assert money.major_text(-1, "usd") == "-0.01"
