"""The PostgreSQL ledger across processes: concurrent runs of different partitions, the claim guard
under a race, and a password that never shows (the SIGKILL and ledger-loss tests of test_crash.py
and test_ledger_loss.py run over both backends through the `ledger_env` fixture)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from stripe_aep.aep.ledger import AttemptState, LedgerUnreadable, PostgresBatchLedger
from stripe_aep.postgres import PostgresUnavailable
from stripe_aep_tests.aep.conftest import env_for, write_xdm_file

ROOT = Path(__file__).resolve().parents[2]
DAYS = [f"xdm/charges/2026-11-{d}" for d in (20, 21, 22)]


def _day_files(lake: Path, day_index: int, count: int = 3, rows: int = 10):
    base = 1763596800 + day_index * 86400
    return [
        write_xdm_file(
            lake,
            f"{DAYS[day_index]}/{base + i * 3600}-{base + (i + 1) * 3600}.part0.parquet",
            (day_index * count + i) * rows,  # ids distinct across days
            rows,
        )
        for i in range(count)
    ]


def test_concurrent_runs_of_different_partitions_in_separate_processes_deliver_once(
    aep, lake, tmp_path, dataset_id, postgres_url
):
    files = [f for d in range(len(DAYS)) for f in _day_files(lake, d)]
    env = {
        **os.environ,
        **env_for(aep),
        "STRIPE_AEP_LEDGER_URL": postgres_url,
        "PYTHONPATH": str(ROOT),
    }
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stripe_aep_tests.aep.deliver_child",
                str(lake),
                str(tmp_path / f"data{i}"),  # no shared folder: only the database
                dataset_id,
                "2",
                day,
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, day in enumerate(DAYS)
    ]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    ids = Counter(aep.rows(dataset_id).column("_id").to_pylist())
    want = set()
    for f in files:
        with f.open() as fh:
            want.update(pq.read_table(fh).column("_id").to_pylist())
    assert set(ids) == want and set(ids.values()) == {1}
    ledger = PostgresBatchLedger(postgres_url)
    attempts = ledger.attempts(dataset_id)
    # 3 files a day, 2 per batch: two batches per day, every one a success, each file once
    assert [a.state for a in attempts] == [AttemptState.SUCCESS] * 6
    assert ledger.pending_batches() == []
    assert ledger.delivered_rows(files, dataset_id) == 90
    owners = {e["detail"].split(" ")[0] for e in ledger.events() if e["event"] == "intent"}
    assert len(owners) == 6  # six distinct externalIds
    assert len([b for b in aep.state.batches.values() if b["status"] == "success"]) == 6
    ledger.close()


RACE = """
import os, sys, time
from stripe_aep.aep.ledger import PostgresBatchLedger
from types import SimpleNamespace
url, me, start, sets = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ledger = PostgresBatchLedger(url)
while not os.path.exists(start):
    time.sleep(0.001)
for k in range(sets):  # every process races every other for each set of files, in turn
    files = [SimpleNamespace(key=f"xdm/charges/2026-11-20/{k}-{i}.parquet", rows=1, size=1)
             for i in range(3)]
    try:
        ledger.record_intent("ds", f"ext-{me}-{k}", files)
        print("claimed", k, flush=True)
    except RuntimeError as exc:
        assert "already claimed" in str(exc), exc
"""


def test_racing_processes_claim_the_same_files_exactly_once(tmp_path, postgres_url):
    """The claim check and the claiming insert are one atomic step across processes: six processes
    race for each of 150 sets of files, and every set is claimed by exactly one of them."""
    PostgresBatchLedger(postgres_url).close()  # schema in place before the race
    start, sets = tmp_path / "go", 150
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, postgres_url, str(i), str(start), str(sets)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(6)
    ]
    time.sleep(1.5)  # every process connected and polling
    start.touch()
    claimed: Counter[int] = Counter()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        claimed.update(int(line.split()[1]) for line in out.splitlines())
    assert claimed == Counter(range(sets)), {k: n for k, n in claimed.items() if n != 1}
    ledger = PostgresBatchLedger(postgres_url)
    attempts = ledger.attempts("ds")
    assert len(attempts) == sets
    assert sum(len(ledger.files_of(a.attempt_id)) for a in attempts) == 3 * sets
    ledger.close()


def _password(url: str) -> str:
    return url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]


def test_the_password_never_shows(postgres_url):
    password = _password(postgres_url)
    ledger = PostgresBatchLedger(postgres_url)
    assert password not in repr(ledger) and password not in ledger.where
    assert "***" in ledger.where
    ledger.close()

    wrong = postgres_url.replace(password, password[::-1] + "x")
    with pytest.raises(PostgresUnavailable) as err:
        PostgresBatchLedger(wrong)
    text = str(err.value)
    assert "cannot connect to the delivery ledger database" in text
    assert "STRIPE_AEP_LEDGER_URL" in text and "***" in text
    assert password[::-1] + "x" not in text and password not in text
    assert err.value.__cause__ is None and err.value.__suppress_context__

    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("DROP TABLE batch_files")
        db.execute("CREATE TABLE batch_files (attempt_id BIGINT)")  # a foreign table of that name
    with pytest.raises(LedgerUnreadable) as err:
        PostgresBatchLedger(postgres_url)
    assert "batch_files lacks column(s)" in str(err.value) and password not in str(err.value)
    assert "***" in str(err.value)
