"""The events side of change capture: fetched_at in sidecars, the probe, the 30-day edge, the asset."""

import datetime as dt
import time

import dagster as dg
import pytest

import stripe_aep.assets.raw as raw_module
from stripe_aep.assets.events import build_events_asset
from stripe_aep.assets.raw import raw_assets
from stripe_aep.catalog import DEFAULT_RESOURCES, EVENTS, event_type_passes, stripe_resource
from stripe_aep.config import RESOURCES_VARIABLE, StripeSettings
from stripe_aep.lake import Lake
from stripe_aep.resources import LakeResource, StripeResource
from stripe_aep.stripe.client import StripeClient
from stripe_aep.stripe.events import (
    COVERAGE_STATE_PATH,
    EVENTS_RETENTION_SECONDS,
    Hole,
    LostWindows,
    oldest_fetchable,
    probe,
    scan_coverage,
)
from stripe_aep.stripe.extract import PartitionExtractor, encode
from stripe_aep.stripe.rawstore import RawPartition, day_bounds, fetched_at, read_objects
from stripe_aep_tests.conftest import AEP_SOURCE_RESOURCES, TEST_KEY, only
from stripe_aep_tests.stripe.fake_stripe import FakeStripe

DAY = dt.date(2026, 3, 10)
START, END = day_bounds(DAY)
LAG = 120


def _customer(cid: str, created: int) -> dict:
    return {"id": cid, "object": "customer", "created": created, "email": f"{cid}@x.test"}


def _event(eid: str, etype: str, obj: dict, created: int) -> dict:
    return {
        "id": eid,
        "object": "event",
        "type": etype,
        "created": created,
        "data": {"object": obj},
    }


def _write(lake, resource, day, gte, lt, objects, **meta):
    part = RawPartition(lake, resource, day)
    return part.write(gte, lt, [encode(o) for o in objects], meta)


# -- fetched_at ---------------------------------------------------------------------------------


def test_merged_file_keeps_the_oldest_fetch_time_of_its_parts(tmp_path):
    lake = Lake(str(tmp_path))
    part = RawPartition(lake, "customers", DAY)
    a = _write(lake, "customers", DAY, START, START + 100, [], fetched_at=START + 500)
    b = _write(lake, "customers", DAY, START + 100, START + 200, [], fetched_at=START + 300)
    c = _write(lake, "customers", DAY, START + 200, START + 300, [])  # written before fetched_at
    merged = part.merge([a, b, c], {"api_version": "v"})
    meta = part.read_meta(merged)
    assert meta["fetched_at"] == START + 300  # min(500, 300, lt of the part without it = 300)
    assert fetched_at(c, {}) == START + 300


def test_listing_sidecars_record_when_their_first_request_started(tmp_path):
    fake = FakeStripe()
    for i in range(250):
        fake.add("customers", _customer(f"cus_{i:04d}", START + 10 * i))
    ticks = iter(range(END + 1000, END + 100000))
    with fake.serve() as server:
        settings = StripeSettings.build(api_key=TEST_KEY, api_base=server.url, max_rps="1000")
        client = StripeClient(settings, shared_limiter=False)
        extractor = PartitionExtractor(
            client,
            Lake(str(tmp_path)),
            "customers",
            concurrency=4,
            visibility_lag_seconds=0,
            clock=lambda: float(next(ticks)),
            max_piece_seconds=900,  # several pieces, merged at the end
        )
        result = extractor.run([DAY])
    lake = Lake(str(tmp_path))
    part = RawPartition(lake, "customers", DAY)
    (merged,) = part.files()
    meta = part.read_meta(merged)
    assert meta["merged_from"] > 1 and result.objects == 250
    # the plan read the clock first; every piece's first request after it: the merged file keeps
    # the earliest of them, earlier than the last clock reading of the run
    assert END + 1000 < meta["fetched_at"] < next(ticks)


# -- the probe ----------------------------------------------------------------------------------


def _probe_lake(tmp_path, events, listed_until=START + 3600, events_until=END):
    lake = Lake(str(tmp_path))
    _write(lake, "customers", DAY, START, listed_until, [], fetched_at=listed_until + 5)
    _write(lake, EVENTS, DAY, START, events_until, events)
    return lake


def test_probe_skips_when_the_events_show_nothing_new(tmp_path):
    old = _customer("cus_old", START - 86400)
    lake = _probe_lake(tmp_path, [_event("evt_1", "customer.updated", old, START + 7200)])
    decision = probe(lake, "customers", DAY, END + LAG, LAG)
    assert decision.skip and decision.events_read == 1
    assert "show no customer created" in decision.reason


def test_probe_lists_when_an_event_shows_a_new_object(tmp_path):
    new = _customer("cus_new", START + 5000)
    lake = _probe_lake(tmp_path, [_event("evt_2", "customer.created", new, START + 5000)])
    decision = probe(lake, "customers", DAY, END + LAG, LAG)
    assert not decision.skip and "cus_new" in decision.reason and "evt_2" in decision.reason
    # an event of another resource never triggers the customers listing
    assert probe(lake, "prices", DAY, END + LAG, LAG).skip


def test_probe_lists_when_the_events_do_not_cover_the_gap(tmp_path):
    lake = _probe_lake(tmp_path, [], events_until=START + 1800)  # events end before the gap
    decision = probe(lake, "customers", DAY, END + LAG, LAG)
    assert not decision.skip and "do not cover" in decision.reason
    lake2 = _probe_lake(tmp_path / "b", [], events_until=END - 3600)  # end well before the gap's
    decision = probe(lake2, "customers", DAY, END + LAG, LAG)
    assert not decision.skip and "before the raw gap's end" in decision.reason


def test_probe_trusts_events_only_for_the_types_they_asked(tmp_path):
    """A resource added to the selection later: the events fetched before never asked its types,
    so they do not tell that none of its objects was created; the listing runs."""
    lake = Lake(str(tmp_path))
    _write(lake, "invoices", DAY, START, START + 3600, [], fetched_at=START + 3605)
    # events written before the sidecars recorded their types: AEP's six resources' 20 types
    _write(lake, EVENTS, DAY, START, END, [])
    assert probe(lake, "customers", DAY, END + LAG, LAG).skip
    decision = probe(lake, "invoices", DAY, END + LAG, LAG)
    assert not decision.skip and "asked the invoice creation types" in decision.reason
    # events that asked the invoices' types too
    lake2 = Lake(str(tmp_path / "b"))
    _write(lake2, "invoices", DAY, START, START + 3600, [], fetched_at=START + 3605)
    types = [t for p in event_type_passes(DEFAULT_RESOURCES) for t in p]
    _write(lake2, EVENTS, DAY, START, END, [], event_types=types)
    assert probe(lake2, "invoices", DAY, END + LAG, LAG).skip
    # and events that asked only the customers' types cover the customers only
    lake3 = Lake(str(tmp_path / "c"))
    for resource in ("customers", "invoices"):
        _write(lake3, resource, DAY, START, START + 3600, [], fetched_at=START + 3605)
    asked = list(stripe_resource("customers").event_types)
    _write(lake3, EVENTS, DAY, START, END, [], event_types=asked)
    assert probe(lake3, "customers", DAY, END + LAG, LAG).skip
    assert not probe(lake3, "invoices", DAY, END + LAG, LAG).skip


def test_events_files_record_the_types_they_asked(tmp_path):
    fake = FakeStripe()
    with fake.serve() as server:
        settings = StripeSettings.build(api_key=TEST_KEY, api_base=server.url, max_rps="1000")
        PartitionExtractor(
            StripeClient(settings, shared_limiter=False),
            Lake(str(tmp_path)),
            EVENTS,
            concurrency=2,
            visibility_lag_seconds=LAG,
            clock=lambda: float(END + 3600),
            selection=("charges", "customers"),
        ).run([DAY])
    part = RawPartition(Lake(str(tmp_path)), EVENTS, DAY)
    (raw,) = part.files()
    asked = {t for r in ("charges", "customers") for t in stripe_resource(r).requested_event_types}
    assert set(part.read_meta(raw)["event_types"]) == asked


def _events_run(tmp_path, fake, selection, **extractor_options):
    with fake.serve() as server:
        settings = StripeSettings.build(api_key=TEST_KEY, api_base=server.url, max_rps="1000")
        result = PartitionExtractor(
            StripeClient(settings, shared_limiter=False),
            Lake(str(tmp_path)),
            EVENTS,
            concurrency=2,
            visibility_lag_seconds=LAG,
            clock=lambda: float(END + 3600),
            selection=selection,
            **extractor_options,
        ).run([DAY])
    return result


def test_an_unfiltered_events_pass_writes_only_the_selected_types_and_pages_through_the_rest(
    tmp_path,
):
    """The default eight's 32 types need more than one `types[]` request, so one unfiltered pass
    pages every event of the account (Stripe's own types of other objects among them) and only
    the selection's types are written; the pages, the counts and the fewest-requests figure
    follow every event paged."""
    fake = FakeStripe()
    kept_ids, other_ids = set(), set()
    for i in range(130):  # other objects' events, interleaved with the selection's
        created = START + 600 + i * 60
        pi = {"id": f"pi_{i:04d}", "object": "payment_intent", "created": created}
        other_ids.add(fake.add_event("payment_intent.succeeded", pi, created)["id"])
        if i % 10 == 0:
            customer = _customer(f"cus_{i:04d}", created)
            kept_ids.add(fake.add_event("customer.created", customer, created)["id"])
    other_ids.add(fake.add_event("balance.available", {"object": "balance"}, START + 30)["id"])
    result = _events_run(tmp_path, fake, DEFAULT_RESOURCES, max_piece_seconds=None)
    sent = [q for p, q in fake.log if p == "/v1/events"]
    # 144 events in one window: two pages of one unfiltered request each, no `types[]`
    assert len(sent) == 2 and all("types[]" not in q for q in sent)
    assert result.objects == 144 and result.new_objects == len(kept_ids) == 13
    assert result.min_requests == 2 and result.day_pages[DAY.isoformat()] == 2
    lake = Lake(str(tmp_path))
    part = RawPartition(lake, EVENTS, DAY)
    written = [o for f in part.files() for o in read_objects(lake, f)]
    assert {o["id"] for o in written} == kept_ids
    assert not other_ids & {o["id"] for o in written}
    # the window is covered for the kept types, and the sidecar says which
    assert part.coverage() == [(START, END)]
    kept = [t for p in event_type_passes(DEFAULT_RESOURCES) for t in p]
    for raw in part.files():
        assert sorted(part.read_meta(raw)["event_types"]) == sorted(kept)
    assert "payment_intent.succeeded" not in kept


def test_an_unfiltered_events_pass_flushes_a_window_of_dropped_events_in_parts(
    tmp_path, monkeypatch
):
    """A long run of other types' events is not held whole: dropped entries count towards the
    flush threshold, so the window is written in parts (empty files that still claim coverage)."""
    import stripe_aep.stripe.extract as extract_module

    monkeypatch.setattr(extract_module, "FLUSH_BYTES", 100 * extract_module.DROPPED_ENTRY_BYTES)
    fake = FakeStripe()
    for i in range(350):
        created = START + 600 + i * 60
        pi = {"id": f"pi_{i:04d}", "object": "payment_intent", "created": created}
        fake.add_event("payment_intent.created", pi, created)
    writes = []
    real_write = RawPartition.write

    def counting_write(self, gte, lt, lines, meta, **options):
        writes.append((gte, lt, len(lines)))
        return real_write(self, gte, lt, lines, meta, **options)

    monkeypatch.setattr(RawPartition, "write", counting_write)
    result = _events_run(tmp_path, fake, DEFAULT_RESOURCES, split_budget=0.0)
    assert result.objects == 350 and result.new_objects == 0
    # one part per 100 dropped entries held (three flushes), then the rest of the window
    assert len(writes) == 4 and all(n == 0 for _, _, n in writes)
    part = RawPartition(Lake(str(tmp_path)), EVENTS, DAY)
    assert part.coverage() == [(START, END)]
    assert len([q for p, q in fake.log if p == "/v1/events"]) == 4


def test_aep_sixs_events_are_asked_with_their_20_types(tmp_path):
    fake = FakeStripe()
    customer = _customer("cus_1", START + 60)
    fake.add_event("customer.created", customer, START + 60)
    fake.add_event("invoice.created", {"id": "in_1", "object": "invoice"}, START + 70)
    result = _events_run(tmp_path, fake, AEP_SOURCE_RESOURCES)
    (sent,) = [q for p, q in fake.log if p == "/v1/events"]
    (types,) = event_type_passes(AEP_SOURCE_RESOURCES)
    assert sent["types[]"] == list(types) and len(types) == 20
    assert result.objects == result.new_objects == 1


def test_probe_never_skips_balance_transactions(tmp_path):
    lake = _probe_lake(tmp_path, [])
    assert not probe(lake, "balance_transactions", DAY, END + LAG, LAG).skip


# -- the 30-day edge ----------------------------------------------------------------------------


def test_events_extractor_never_claims_windows_past_the_retention(tmp_path):
    fake = FakeStripe()
    now = float(END + 40 * 86400)  # DAY is 40 days old
    with fake.serve() as server:
        settings = StripeSettings.build(api_key=TEST_KEY, api_base=server.url, max_rps="1000")
        extractor = PartitionExtractor(
            StripeClient(settings, shared_limiter=False),
            Lake(str(tmp_path)),
            EVENTS,
            concurrency=2,
            visibility_lag_seconds=LAG,
            clock=lambda: now,
            oldest_fetchable=oldest_fetchable,
            selection=DEFAULT_RESOURCES,
        )
        result = extractor.run([DAY, dt.datetime.fromtimestamp(now - 86400 * 29.5, dt.UTC).date()])
    assert all(a >= oldest_fetchable(now) for a, _ in result.windows)
    assert RawPartition(Lake(str(tmp_path)), EVENTS, DAY).coverage() == []
    sent = [q for p, q in fake.log if p == "/v1/events"]
    assert sent and all(int(q["created[gte]"][0]) >= oldest_fetchable(now) for q in sent)
    # the eight resources' 32 types need more than one `types[]` request: each window is one
    # unfiltered request instead
    assert len(event_type_passes(DEFAULT_RESOURCES)) == 2
    assert len(sent) == len(result.windows)
    assert all("types[]" not in q and "type" not in q for q in sent)


def test_a_hole_older_than_the_retention_is_recorded_as_lost(tmp_path):
    lake = Lake(str(tmp_path))
    listed_at = START + 3600
    _write(lake, "customers", DAY, START, END, [_customer("c", START)], fetched_at=listed_at)
    later = DAY + dt.timedelta(days=5)
    _write(lake, "prices", later, *day_bounds(later), [], fetched_at=day_bounds(later)[1] + 60)
    now = float(END + 40 * 86400)
    # the events were fetched for the last 10 days only: the 30 days before are a hole
    for i in range(11):
        day = dt.datetime.fromtimestamp(now, dt.UTC).date() - dt.timedelta(days=i)
        lo, hi = day_bounds(day)
        if min(hi, int(now) - LAG) > lo:
            _write(lake, EVENTS, day, lo, min(hi, int(now) - LAG), [])
    report = scan_coverage(lake, now, LAG)
    assert report.needed_from == listed_at
    (lost,) = report.lost
    assert lost.gte == listed_at and lost.lt == oldest_fetchable(now)
    (hole,) = report.fetchable  # still fetchable: from the retention's edge to the 10 days
    assert hole.gte == oldest_fetchable(now)
    assert "LOST" in report.warning() and "run stripe/events" in report.warning()
    (window,) = LostWindows(lake).load()
    assert (window.gte, window.lt, window.status) == (lost.gte, lost.lt, "open")
    # customers fetched before the hole's end, prices too (fetched 5 days after DAY, < lt)
    assert window.partitions == {"customers": [DAY.isoformat()], "prices": [later.isoformat()]}
    # a second scan neither records it again nor re-reads the old sidecars
    again = scan_coverage(lake, now + 900, LAG)
    # the unfetched hole lost 15 more minutes: the open window grows, no second one
    assert again.lost == [Hole(lost.lt, oldest_fetchable(now + 900))]
    (window,) = LostWindows(lake).load()
    assert (window.gte, window.lt) == (lost.gte, oldest_fetchable(now + 900))
    assert lake.read_json(COVERAGE_STATE_PATH)["final_through"] >= oldest_fetchable(now)


def test_no_listing_means_no_coverage_needed(tmp_path):
    report = scan_coverage(Lake(str(tmp_path)), time.time(), LAG)
    assert report.needed_from is None and not report.lost and not report.fetchable
    assert EVENTS_RETENTION_SECONDS == 30 * 86400


# -- the asset and the probe in one run -----------------------------------------------------------


@pytest.fixture
def fake_today(monkeypatch):
    """A fresh-data tick's clock: today = DAY, 15 minutes apart per tick."""
    clock = {"now": float(START + 10 * 3600)}
    monkeypatch.setattr(raw_module, "_now", lambda: clock["now"])
    return clock


def _tick(fake_url, root, instance, selection=AEP_SOURCE_RESOURCES):
    """One fresh-data tick of the Stripe steps of `selection` (stripe/events and the raw assets)."""
    resources = {
        "stripe": StripeResource(
            api_key=TEST_KEY, api_base=fake_url, max_rps="1000", visibility_lag_seconds=str(LAG)
        ),
        "lake": LakeResource(root=str(root)),
    }
    result = dg.materialize(
        [build_events_asset(selection), *only(raw_assets, selection)],
        resources=resources,
        partition_key=DAY.isoformat(),
        instance=instance,
    )
    assert result.success
    return {
        e.asset_key.path[-1]: e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }


@pytest.mark.parametrize(
    "selection, type_groups",
    [(AEP_SOURCE_RESOURCES, 1), (DEFAULT_RESOURCES, 2)],
    ids=["aep-six", "default-eight"],
)
def test_an_idle_tick_costs_one_events_request_and_one_for_balance_transactions(
    tmp_path, fake_today, monkeypatch, selection, type_groups
):
    """An idle tick costs 2 requests, events and balance transactions, whatever the selection:
    AEP's six ask their 20 types in one request, the default eight (32 types, more than one
    request's 20) one unfiltered request; a new customer costs one more."""
    monkeypatch.setenv(RESOURCES_VARIABLE, ",".join(selection))
    assert len(event_type_passes(selection)) == type_groups
    events_passes = 1
    fake = FakeStripe()
    old = fake.add("customers", _customer("cus_old", START - 86400))
    with fake.serve() as server, dg.instance_for_test() as instance:
        _tick(server.url, tmp_path, instance, selection)  # the day's first tick lists everything
        fake_today["now"] += 900
        before = len(fake.paths())
        meta = _tick(server.url, tmp_path, instance, selection)
        idle = fake.paths()[before:]
        assert sorted(idle) == ["/v1/balance_transactions"] + ["/v1/events"] * events_passes, idle
        assert len(idle) == 1 + events_passes
        assert meta["events"]["run_requests"].value == events_passes
        with_events = [r for r in selection if stripe_resource(r).has_events]
        assert len(with_events) == len(selection) - 1
        for resource in with_events:
            assert meta[resource]["listing_skipped_by_events"].value is True, resource
            assert meta[resource]["run_requests"].value == 0
        assert meta["balance_transactions"]["listing_skipped_by_events"].value is False
        cursor_before = RawPartition(Lake(str(tmp_path)), "customers", DAY).cursor()

        # a customer is created (and an old one updated): the next tick lists customers once more
        new = fake.add("customers", _customer("cus_new", int(fake_today["now"]) + 10))
        fake.add_event("customer.created", new, new["created"])
        fake.add_event("customer.updated", {**old, "email": "x@y.test"}, new["created"] + 5)
        fake_today["now"] += 900
        before = len(fake.paths())
        meta = _tick(server.url, tmp_path, instance, selection)
        sent = fake.paths()[before:]
        assert sorted(sent) == sorted(
            ["/v1/balance_transactions", "/v1/customers"] + ["/v1/events"] * events_passes
        ), sent
        assert meta["customers"]["listing_skipped_by_events"].value is False
        assert "cus_new" in meta["customers"]["listing_probe"].value
        assert meta["events"]["run_new_objects"].value == 2
    lake = Lake(str(tmp_path))
    ids = {
        o["id"] for f in RawPartition(lake, "customers", DAY).files() for o in read_objects(lake, f)
    }
    assert "cus_new" in ids
    assert RawPartition(lake, "customers", DAY).cursor() > cursor_before
    reads = lake.read_json("_meta/stripe_reads/events.json")
    # the events' own reads ledger: its passes each tick, plus the first write's one-off /v1/account
    assert sum(reads["days"].values()) == 3 * events_passes + 1
    # the schedules' projection: 1 + the events passes a tick
    assert meta["events"]["projected_monthly_reads"].value >= (1 + events_passes) * (96 * 30 + 30)


def test_the_newest_unfetched_events_are_not_a_hole_until_a_day_old(tmp_path):
    lake = Lake(str(tmp_path))
    now = float(END + 3600)
    _write(lake, "customers", DAY, START, END, [], fetched_at=START + 600)
    _write(lake, EVENTS, DAY, START, END - 7200, [])  # the last two hours not fetched yet
    report = scan_coverage(lake, now, LAG)
    assert report.lost == [] and report.fetchable == []
    later = scan_coverage(lake, now + 2 * 86400, LAG)  # two days later: the pipeline is behind
    assert [(h.gte, h.lt) for h in later.fetchable] == [(END - 7200, int(now) + 2 * 86400 - LAG)]


def test_every_type_the_emulator_emits_is_asked_for():
    from stripe_aep.catalog import stripe_resource
    from stripe_aep.emulators.stripe_events import EMITTED_TYPES

    for name, types in EMITTED_TYPES.items():  # asked for when the resource is selected
        assert set(types) <= set(stripe_resource(name).requested_event_types), name


def test_idle_ticks_against_the_emulator_cost_two_reads_and_a_refund_one_more(
    tmp_path, fake_today, aep_source_selection
):
    """The fresh-data tick's Stripe steps of AEP's six resources on the emulator, counted in its
    arrival log: 2 reads an idle tick."""
    from stripe_aep.emulators.stripe_account import StripeAccount
    from stripe_aep.emulators.stripe_api import StripeEmulator

    clock = fake_today
    account = StripeAccount(
        start=DAY - dt.timedelta(days=2), days=2, charges_per_day=30, clock=lambda: clock["now"]
    )
    with StripeEmulator(account, rate_limit_rps=0) as emulator, dg.instance_for_test() as inst:

        def tick():
            before = len(emulator.log)
            meta = _tick(emulator.url, tmp_path, inst)
            return sorted(r.path for r in emulator.log[before:]), meta

        tick()  # the first tick of the day
        for _ in range(2):
            clock["now"] += 900
            paths, meta = tick()
            assert paths == ["/v1/balance_transactions", "/v1/events"]
        # the reads projection of the schedules: 2 reads a tick, within the 10,000 floor
        assert meta["events"]["projected_monthly_reads"].value == 2 * (96 * 30 + 30)
        # a refund is created (a new refunds object, and an update of an old charge)
        charge = next(
            c
            for c in account.objects("charges", *day_bounds(DAY - dt.timedelta(days=1)))
            if c["status"] == "succeeded" and not c["refunded"] and c["captured"]
        )
        account.mutate("charges", charge["id"], "refund")
        clock["now"] += 900
        paths, meta = tick()
        assert paths == ["/v1/balance_transactions", "/v1/events", "/v1/refunds"]
        assert meta["charges"]["listing_skipped_by_events"].value is True  # an old charge
        assert meta["refunds"]["run_new_objects"].value == 1
    lake = Lake(str(tmp_path))
    (refund,) = [
        o for f in RawPartition(lake, "refunds", DAY).files() for o in read_objects(lake, f)
    ]
    assert refund["charge"] == charge["id"]


def test_the_default_eights_events_from_the_emulator_drop_its_payment_intent_events(tmp_path):
    """On the emulator (each charge also brings two PaymentIntent events, as on Stripe), the
    default eight's unfiltered pass pages every event and writes exactly the catalog's ones."""
    from stripe_aep.emulators.stripe_account import StripeAccount
    from stripe_aep.emulators.stripe_api import StripeEmulator

    now = float(END + 3600)
    account = StripeAccount(start=DAY, days=1, charges_per_day=150, clock=lambda: now)
    served = account.events(START, END)
    kept = {t for p in event_type_passes(DEFAULT_RESOURCES) for t in p}
    wanted = [e for e in served if e["type"] in kept]
    intents = [e for e in served if e["type"].startswith("payment_intent.")]
    assert intents and len(wanted) + len(intents) == len(served)
    with StripeEmulator(account, rate_limit_rps=0) as emulator:
        settings = StripeSettings.build(api_key=TEST_KEY, api_base=emulator.url, max_rps="1000")
        result = PartitionExtractor(
            StripeClient(settings, shared_limiter=False),
            Lake(str(tmp_path)),
            EVENTS,
            concurrency=2,
            visibility_lag_seconds=LAG,
            clock=lambda: now,
            selection=DEFAULT_RESOURCES,
        ).run([DAY])
        sent = [r for r in emulator.log if r.path == "/v1/events"]
    assert result.objects == len(served) and result.new_objects == len(wanted)
    assert len(sent) == result.request_stats["pages"] >= -(-len(served) // 100)
    lake = Lake(str(tmp_path))
    written = [o for f in RawPartition(lake, EVENTS, DAY).files() for o in read_objects(lake, f)]
    assert sorted(e["id"] for e in written) == sorted(e["id"] for e in wanted)
