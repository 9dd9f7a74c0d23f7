"""Child process for the crash tests: deliver every Parquet file under a lake folder, then exit.

Run as `python -m stripe_aep_tests.aep.deliver_child <lake> <data_dir> <dataset_id> [<max files
per batch> [<key prefix>]] [--crash-at <checkpoint>]` with the `AEP_*` variables pointing at an
emulator (and `STRIPE_AEP_LEDGER_URL` for a PostgreSQL ledger). `--crash-at` SIGKILLs this process
when the delivery reaches that checkpoint (stripe_aep_tests/crash.py). Prints the delivery's
summary (`DeliverySummary.to_json`) as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.deliver import XdmFile, deliver
from stripe_aep.aep.ledger import open_ledger
from stripe_aep.aep.settings import AepSettings
from stripe_aep_tests.crash import sigkill_at


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="deliver_child")
    parser.add_argument("lake", type=Path)
    parser.add_argument("data_dir")
    parser.add_argument("dataset_id")
    parser.add_argument("max_files", nargs="?", type=int, default=1500)
    parser.add_argument("prefix", nargs="?", default="", help="only the files of one folder")
    parser.add_argument("--crash-at", default=None, help="a checkpoint of deliver")
    args = parser.parse_args(argv)
    files = [
        XdmFile.from_path(p, p.relative_to(args.lake).as_posix())
        for p in sorted(args.lake.rglob("*.parquet"))
        if p.relative_to(args.lake).as_posix().startswith(args.prefix)
    ]
    client = AepClient(AepSettings.from_env(), backoff_base_s=0.01, backoff_max_s=0.05)
    ledger = open_ledger(args.data_dir)  # STRIPE_AEP_LEDGER_URL, else the SQLite file in data_dir
    report = deliver(
        client,
        ledger,
        dataset_id=args.dataset_id,
        files=files,
        wait_timeout_s=10,
        poll_interval_s=0.05,
        max_files_per_batch=args.max_files,
        upload_concurrency=2,
        on_checkpoint=sigkill_at(args.crash_at),
    )
    print(json.dumps(report.summary().to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
