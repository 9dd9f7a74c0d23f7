"""Chaos: a seeded random sequence of faults, then one clean run, and AEP holds Stripe's objects once.

Faults, each drawn with the seed's generator: SIGKILL of a run at a random moment (whatever layer it
is in), SIGKILL at a named point of delivery, truncated and deleted files in the raw and XDM layers
(data, manifests, metadata), an emptied or deleted delivery ledger, two runs of the same partitions
at once, and error storms from Stripe (500s, 429s, dropped connections) and AEP (503s on upload and
COMPLETE, failed batches). Runs under faults may fail: only the data is judged. After the sequence
one clean run must succeed, and every Stripe object of the range is in AEP exactly once (read from
the emulator's successful batches) — nothing lost, nothing doubled.

`make test` runs `STRIPE_AEP_CHAOS_SEEDS` seeds (default 2); `make chaos` runs 20. A failing seed is
printed with its fault sequence; rerun it alone with `STRIPE_AEP_CHAOS_SEED=<n>`.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.settings import AepSettings
from stripe_aep.aep.setup import run_setup
from stripe_aep.config import RESOURCES_VARIABLE
from stripe_aep.emulators.aep_api import AepEmulator
from stripe_aep.emulators.aep_store import AepFaults
from stripe_aep.emulators.stripe_account import StripeAccount
from stripe_aep.emulators.stripe_api import StripeEmulator, StripeFaults
from stripe_aep.stripe.rawstore import day_bounds
from stripe_aep.xdm import schema_registry_payloads
from stripe_aep_tests.aep.conftest import env_for
from stripe_aep_tests.conftest import ACCOUNT_START, TEST_KEY
from stripe_aep_tests.conftest import AEP_SOURCE_RESOURCES as RESOURCES

TENANT = "stripeaep"
DAYS = [ACCOUNT_START, ACCOUNT_START + dt.timedelta(days=1)]
FAULTS_PER_SEED = 5
RUN_TIMEOUT_S = 480
#: checkpoints of `deliver` a run is SIGKILLed at (stripe_aep_tests/crash.py)
CRASH_POINTS = (
    "after_create_before_ledger",
    "after_create",
    "after_upload:1",
    "after_complete_before_ledger",
    "while_polling",
)


def _seeds() -> list[int]:
    if os.environ.get("STRIPE_AEP_CHAOS_SEED"):
        return [int(os.environ["STRIPE_AEP_CHAOS_SEED"])]
    return list(range(int(os.environ.get("STRIPE_AEP_CHAOS_SEEDS", "2"))))


@pytest.fixture(scope="module")
def chaos_account():
    # Small on purpose: the point is the sequence of faults, not volume.
    return StripeAccount(seed=23, start=ACCOUNT_START, days=len(DAYS), charges_per_day=60)


class Chaos:
    """The two emulators, the lake and the child runs of one seed."""

    def __init__(self, stripe: StripeEmulator, aep: AepEmulator, lake: Path, rng: random.Random):
        self.stripe, self.aep, self.lake, self.rng = stripe, aep, lake, rng
        self.env = {
            **os.environ,
            **env_for(aep),
            "STRIPE_API_KEY": TEST_KEY,
            "STRIPE_API_BASE": stripe.url,
            "STRIPE_AEP_DATA_DIR": str(lake),
            RESOURCES_VARIABLE: ",".join(RESOURCES),
        }
        self.outcomes: list[str] = []
        self.runs = 0

    # -- runs ---------------------------------------------------------------------------------

    def start_run(self, *extra_args: str) -> subprocess.Popen:
        self.runs += 1
        self.last_log = self.lake.parent / f"run-{self.runs}.log"
        log = open(self.last_log, "wb")  # noqa: SIM115 - the child owns it until it exits
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stripe_aep_tests.chaos.chaos_child",
                str(self.lake),
                DAYS[0].isoformat(),
                DAYS[-1].isoformat(),
                *extra_args,
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def finish(self, proc: subprocess.Popen) -> int:
        try:
            return proc.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            tail = self.last_log.read_text(errors="replace")[-3000:]
            raise AssertionError(
                f"a chaos run hung after {'; '.join(self.outcomes)}\n{tail}"
            ) from None

    def run(self, *extra_args: str) -> int:
        return self.finish(self.start_run(*extra_args))

    # -- faults -------------------------------------------------------------------------------

    def kill_at_random_moment(self) -> str:
        delay = self.rng.uniform(0.5, 12.0)
        proc = self.start_run()
        try:
            proc.wait(timeout=delay)
            return f"kill after {delay:.1f}s: run ended first ({proc.returncode})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"SIGKILL after {delay:.1f}s"

    def kill_in_delivery(self) -> str:
        point = self.rng.choice(CRASH_POINTS)
        return f"crash at {point}: exit {self.run(point)}"

    def _files(self, layer: str) -> list[Path]:
        root = self.lake / layer
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    def truncate_file(self) -> str:
        files = self._files(self.rng.choice(["stripe", "xdm"]))
        if not files:
            return "truncate: no file yet"
        victim = self.rng.choice(files)
        size = victim.stat().st_size
        keep = self.rng.randrange(0, max(size, 1))
        with open(victim, "r+b") as fh:
            fh.truncate(keep)
        return f"truncate {victim.relative_to(self.lake)} {size} -> {keep} bytes"

    def delete_file(self) -> str:
        files = self._files(self.rng.choice(["stripe", "xdm"]))
        if not files:
            return "delete: no file yet"
        victim = self.rng.choice(files)
        victim.unlink()
        return f"delete {victim.relative_to(self.lake)}"

    def lose_ledger(self) -> str:
        ledgers = [p for p in self.lake.rglob("*.sqlite*") if p.is_file()]
        if not ledgers:
            return "lose ledger: none yet"
        if self.rng.random() < 0.5:
            for p in ledgers:
                p.unlink()
            return "ledger deleted"
        for p in ledgers:
            with open(p, "r+b") as fh:
                fh.truncate(0)
        return "ledger emptied"

    def duplicate_runs(self) -> str:
        first = self.start_run()
        time.sleep(self.rng.uniform(0.0, 2.0))
        second = self.start_run()
        return f"two runs at once: exits {self.finish(first)}, {self.finish(second)}"

    def stripe_storm(self) -> str:
        # A burst, not a permanent outage: a bounded number of faults of every kind the emulator
        # can inject, plus a random 500 rate, so the run retries through it or fails with Stripe's
        # error (both are fine here; only the final data is judged).
        faults = self.stripe.faults
        faults.server_errors_500 = self.rng.randrange(0, 40)
        faults.rate_limited_429 = self.rng.randrange(0, 20)
        faults.dropped_connections = self.rng.randrange(0, 5)
        faults.truncated_bodies = self.rng.randrange(0, 5)
        rate = faults.error_rate = self.rng.choice([0.0, 0.1, 0.2])
        faults.error_seed = self.rng.randrange(1 << 30)
        try:
            code = self.run()
        finally:
            faults.__init__()  # back to no faults
        return f"Stripe error storm (burst + {rate} error rate): exit {code}"

    def aep_storm(self) -> str:
        faults = self.aep.store.faults
        faults.put_5xx = self.rng.randrange(0, 8)
        faults.complete_5xx = self.rng.randrange(0, 4)
        faults.fail_next_batches = self.rng.randrange(0, 3)
        faults.expire_all_tokens = self.rng.random() < 0.5
        try:
            code = self.run()
        finally:
            faults.put_5xx = faults.complete_5xx = faults.fail_next_batches = 0
            faults.expire_all_tokens = False
        return f"AEP error storm: exit {code}"

    FAULTS = (
        "kill_at_random_moment",
        "kill_in_delivery",
        "truncate_file",
        "delete_file",
        "lose_ledger",
        "duplicate_runs",
        "stripe_storm",
        "aep_storm",
    )

    def inject(self) -> None:
        name = self.rng.choice(self.FAULTS)
        self.outcomes.append(getattr(self, name)())
        print(f"chaos: {self.outcomes[-1]}", flush=True)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("seed", _seeds())
def test_faults_then_a_clean_run_leave_every_object_in_aep_exactly_once(
    seed, chaos_account, tmp_path
):
    rng = random.Random(seed)
    with (
        StripeEmulator(chaos_account, rate_limit_rps=0, faults=StripeFaults()) as stripe,
        AepEmulator(faults=AepFaults(processing_delay_s=0.05)) as aep,
    ):
        client = AepClient(AepSettings.from_env(env_for(aep)))
        payloads = {r: schema_registry_payloads(r, TENANT) for r in RESOURCES}
        datasets = run_setup(client, tenant=TENANT, payloads=payloads, environ={})
        client.close()

        chaos = Chaos(stripe, aep, tmp_path / "lake", rng)
        for _ in range(FAULTS_PER_SEED):
            chaos.inject()
        story = f"seed {seed}: " + "; ".join(chaos.outcomes)
        # A run killed mid-delivery may leave a batch in AEP that only the next run completes or
        # aborts; the clean run must settle all of it by itself.
        assert chaos.run() == 0, (
            f"the clean run failed after {story}\n"
            + chaos.last_log.read_text(errors="replace")[-4000:]
        )

        aep.finish_processing()
        for resource in RESOURCES:
            truth = {
                o["id"] for day in DAYS for o in chaos_account.objects(resource, *day_bounds(day))
            }
            rows = aep.rows(datasets[resource])
            ids = rows.column(f"_{TENANT}").combine_chunks().field("stripe").field("id").to_pylist()
            doubled = sorted({i for i in ids if ids.count(i) > 1})
            assert not doubled, f"{resource}: delivered twice: {doubled[:5]} after {story}"
            assert set(ids) == truth, (
                f"{resource}: missing {sorted(truth - set(ids))[:5]}, "
                f"unexpected {sorted(set(ids) - truth)[:5]} after {story}"
            )
