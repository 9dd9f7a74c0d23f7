"""Child process for the crash tests: deliver every Parquet file under a lake folder, then exit.

Run as `python -m stripe_aep_tests.aep.deliver_child <lake> <data_dir> <dataset_id>` with the
`AEP_*` variables pointing at an emulator (and `STRIPE_AEP_LEDGER_URL` for a PostgreSQL ledger); `STRIPE_AEP_CRASH_AT` makes `deliver` SIGKILL this process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.deliver import XdmFile, deliver
from stripe_aep.aep.ledger import open_ledger
from stripe_aep.aep.settings import AepSettings


def main(argv: list[str]) -> int:
    lake, data_dir, dataset_id = Path(argv[0]), argv[1], argv[2]
    max_files = int(argv[3]) if len(argv) > 3 else 1500
    prefix = argv[4] if len(argv) > 4 else ""  # only the files of one partition folder
    files = [
        XdmFile.from_path(p, p.relative_to(lake).as_posix())
        for p in sorted(lake.rglob("*.parquet"))
        if p.relative_to(lake).as_posix().startswith(prefix)
    ]
    client = AepClient(AepSettings.from_env(), backoff_base_s=0.01, backoff_max_s=0.05)
    ledger = open_ledger(data_dir)  # STRIPE_AEP_LEDGER_URL, else the SQLite file in data_dir
    report = deliver(
        client,
        ledger,
        dataset_id=dataset_id,
        files=files,
        wait_timeout_s=10,
        poll_interval_s=0.05,
        max_files_per_batch=max_files,
        upload_concurrency=2,
    )
    print(json.dumps(report.as_metadata()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
