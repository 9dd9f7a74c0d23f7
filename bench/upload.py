"""Upload benchmark: stripe-aep's deliverer vs a plain single-stream PUT of the same files, same run.

Generates ≥ 1 GiB of XDM-like Parquet (several files of 64–200 MiB, incompressible content), starts the
AEP emulator in its own process (own core, files kept on disk), sets up a dataset, then measures:

1. baseline: one batch, every file PUT one after the other on one connection, COMPLETE — what a
   simple script does;
2. stripe-aep: `deliver(...)` of the same files to the same dataset (write-ahead ledger, sha256 of
   every byte, a few concurrent PUTs per batch, COMPLETE), `wait_timeout_s=0` so processing time in
   the emulator is not counted (it is checked afterwards: the delivery batch must end `success`).

Prints MB/s and batches/s for both and their ratio. Not a test: the figures depend on the machine
(on localhost there is no network latency for concurrency to hide, so the ratio understates what
concurrent PUTs gain against a remote gateway). Usage:

    .venv/bin/python bench/upload.py [--sizes-mib 64,128,200,64,128,200,64,128,200] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import requests

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.deliver import XdmFile, deliver
from stripe_aep.aep.ledger import BatchLedger
from stripe_aep.aep.settings import AepSettings
from stripe_aep.aep.setup import run_setup
from stripe_aep.xdm.standard import EXPERIENCE_EVENT as EE_CLASS

TENANT = "stripeaep"
ROW_BYTES = 32 + 8 + 24 + 8 + 160  # _id, timestamp, id, amount, description (approx., uncompressed)

SERVER = """
import sys, uvicorn
from stripe_aep.emulators._server import bind_socket
from stripe_aep.emulators.aep_api import create_app, AepFaults
from pathlib import Path
# files stay in memory; processing starts only after the timed part (validating ~1 GB of Parquet in
# the emulator is not upload time)
app = create_app(faults=AepFaults(processing_delay_s=float(sys.argv[1])))
sock = bind_socket("127.0.0.1", 0)
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                              timeout_keep_alive=60)).run(sockets=[sock])
"""


def payloads() -> dict:
    ns = f"_{TENANT}"
    return {
        "bench": {
            "class_id": EE_CLASS,
            "field_group": {
                "title": "stripe-aep upload benchmark",
                "type": "object",
                "meta:intendedToExtend": [EE_CLASS],
                "definitions": {
                    "bench": {
                        "properties": {
                            ns: {
                                "type": "object",
                                "properties": {
                                    "stripe": {
                                        "type": "object",
                                        "properties": {
                                            "id": {"type": "string"},
                                            "amount": {
                                                "type": "integer",
                                                "minimum": -9007199254740991,
                                                "maximum": 9007199254740991,
                                            },
                                            "description": {"type": "string"},
                                        },
                                    }
                                },
                            }
                        }
                    }
                },
            },
            "schema": {
                "title": "stripe-aep upload benchmark",
                "type": "object",
                "allOf": [{"$ref": EE_CLASS}, {"$ref": "{{fieldgroup:bench}}"}],
            },
            "descriptors": [],
            "dataset": {
                "name": "stripe-aep upload benchmark",
                "schemaRef": {
                    "id": "{{schema:bench}}",
                    "contentType": "application/vnd.adobe.xed+json;version=1",
                },
            },
        }
    }


def _hex_strings(rng: np.random.Generator, n: int, width: int) -> pa.Array:
    raw = rng.integers(0, 16, size=n * width, dtype=np.uint8)
    chars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[raw]
    offsets = np.arange(0, n * width + 1, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))


def write_file(path: Path, target_mib: int, seed: int) -> XdmFile:
    rng = np.random.default_rng(seed)
    rows = target_mib * 2**20 // ROW_BYTES
    base = int(dt.datetime(2026, 11, 20, tzinfo=dt.UTC).timestamp() * 1000)
    stripe = pa.StructArray.from_arrays(
        [
            _hex_strings(rng, rows, 24),
            pa.array(rng.integers(0, 10**7, rows, dtype=np.int64)),
            _hex_strings(rng, rows, 160),
        ],
        names=["id", "amount", "description"],
    )
    table = pa.table(
        {
            "_id": _hex_strings(rng, rows, 32),
            "timestamp": pa.array(base + np.arange(rows, dtype=np.int64) + seed * 10**7).cast(
                pa.timestamp("ms", tz="UTC")
            ),
            f"_{TENANT}": pa.StructArray.from_arrays([stripe], names=["stripe"]),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="none", row_group_size=256_000)
    return XdmFile.from_path(path, path.name)


def start_emulator(processing_delay_s: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(processing_delay_s)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    port = int(proc.stdout.readline().strip())
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            requests.get(f"{url}/_emulator/health", timeout=1).raise_for_status()
            break
        except requests.RequestException:
            time.sleep(0.05)
    return proc, url


def single_stream(client: AepClient, dataset_id: str, files: list[XdmFile]) -> float:
    """One batch, sequential PUTs of whole files on one pooled connection, COMPLETE."""
    started = time.perf_counter()
    batch_id = client.create_batch(dataset_id, external_id=f"bench-plain-{time.time_ns()}")
    for f in files:
        with f.open() as fh:
            client.upload_file(batch_id, dataset_id, f.key, fh.read())
    client.complete_batch(batch_id)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mib", default="64,128,200,64,128,200,64,128,200")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument(
        "--processing-delay-s",
        type=float,
        default=90.0,
        help="emulator time from COMPLETE to a final status; longer than both timed uploads",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes_mib.split(",")]

    work = Path(tempfile.mkdtemp(prefix="stripe-aep-bench-upload-"))
    t0 = time.perf_counter()
    files = [
        write_file(work / "lake" / f"part-{i:03d}.parquet", mib, seed=i)
        for i, mib in enumerate(sizes)
    ]
    total = sum(f.size for f in files)
    print(
        f"generated {len(files)} files, {total / 2**20:.0f} MiB, {sum(f.rows for f in files):,} rows "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    proc, url = start_emulator(args.processing_delay_s)
    try:
        settings = AepSettings(
            client_id="stripe-aep-local",
            client_secret="local-secret",
            org_id="0000000000000000000000AA@AdobeOrg",
            tenant_id=TENANT,
            ims_url=url,
            platform_url=url,
        )
        client = AepClient(settings, timeout=(10, 600))
        dataset_id = run_setup(client, tenant=TENANT, payloads=payloads(), environ={})["bench"]

        plain_runs: list[float] = []
        ours_runs: list[float] = []
        for round_no in range(args.rounds):  # interleaved, so machine noise hits both alike
            plain_runs.append(single_stream(client, dataset_id, files))
            ledger = BatchLedger.for_data_dir(work / f"data-{round_no}")  # fresh: send again
            started = time.perf_counter()
            report = deliver(
                client,
                ledger,
                dataset_id=dataset_id,
                files=files,
                wait_timeout_s=0,
                poll_interval_s=1,
                upload_concurrency=args.concurrency,
            )
            ours_runs.append(time.perf_counter() - started)
            assert report.bytes == total and len(report.batch_ids) == 1
            print(
                f"round {round_no + 1}: single-stream {plain_runs[-1]:.2f} s, "
                f"stripe-aep {ours_runs[-1]:.2f} s",
                flush=True,
            )

        # outside the timing: the last delivered batch must be accepted by the emulator
        final = deliver(
            client,
            ledger,
            dataset_id=dataset_id,
            files=files,
            wait_timeout_s=900,
            poll_interval_s=1,
        )
        assert final.files == []  # nothing sent twice
        status = client.get_batch(report.batch_ids[0]).status
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)

    plain_s, ours_s = statistics.median(plain_runs), statistics.median(ours_runs)
    mb = total / 1e6
    print(f"payload: {mb:,.0f} MB in {len(files)} files; medians of {args.rounds} rounds")
    print(
        f"single-stream PUT : {plain_s:6.2f} s  {mb / plain_s:8.1f} MB/s  "
        f"{1 / plain_s:6.3f} batches/s"
    )
    print(
        f"stripe-aep deliver: {ours_s:6.2f} s  {mb / ours_s:8.1f} MB/s  "
        f"{len(report.batch_ids) / ours_s:6.3f} batches/s  (concurrency {args.concurrency}, "
        "ledger + sha256 included)"
    )
    print(f"ratio stripe-aep / single-stream: {plain_s / ours_s:.2f}x")
    print(f"delivered batch {report.batch_ids[0]}: {status}")
    return 0 if status == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
