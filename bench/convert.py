"""Benchmark (not a test): raw Stripe charges → XDM Parquet with `convert_jsonl`.

Prints, measured in one run on the same raw data:
- records/s of the full conversion (parse, map, validate, write Parquet);
- the ratio to `pyarrow.json.read_json` alone over the same blocks (the parse floor; target ≥ 0.5);
- the ratio to a `pandas.json_normalize` + `DataFrame.to_parquet` baseline (target ≥ 10×; pandas
  runs on the first `--pandas-charges` records, compared as records/s);
- the peak RSS of converting `--rss-charges` charges in a subprocess (target ≤ 600 MB), with the
  raw lines generated on the fly so the input itself takes no memory.

Charges are shaped like Stripe's fixture (≈ 3.4 KB of JSON each) with varied ids, amounts, created,
currencies, customers, metadata and payment method types (card, klarna, afterpay_clearpay, affirm,
zip, paypal, sepa_debit).

    .venv/bin/python bench/convert.py --charges 200000 --rss-charges 1000000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import random
import resource
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.json as pj

from stripe_aep.xdm import convert_jsonl
from stripe_aep.xdm.convert import _read_blocks, listing_version

FIXTURE = pathlib.Path(__file__).resolve().parent.parent / "specs" / "stripe" / "fixtures3.json"
CURRENCIES = ["usd", "usd", "usd", "eur", "gbp", "jpy", "kwd", "isk", "chf", "aud"]
PM_TYPES = ["card"] * 6 + ["klarna", "afterpay_clearpay", "affirm", "zip", "paypal", "sepa_debit"]
PM_DETAILS = {
    "klarna": {"payment_method_category": "pay_later", "preferred_locale": "de-DE"},
    "afterpay_clearpay": {"order_id": "ap_123", "reference": "order-9"},
    "affirm": {"transaction_id": "af_123"},
    "zip": {},
    "paypal": {"payer_email": "p@example.com", "payer_id": "PAYER1"},
    "sepa_debit": {"bank_code": "37040044", "country": "DE", "last4": "3000"},
}


class ChargeTemplates:
    """Fast generation: the fixture serialised once per payment method type, with slots."""

    def __init__(self) -> None:
        base = json.loads(FIXTURE.read_text())["resources"]["charge"]
        base["description"] = "Charge for order #000000 " + "x" * 560
        base["receipt_email"] = "customer@example.com"
        self.templates: dict[str, str] = {}
        for pm in set(PM_TYPES):
            obj = json.loads(json.dumps(base))
            if pm != "card":
                obj["payment_method_details"] = {"type": pm, pm: PM_DETAILS[pm]}
            obj.update(id="@ID@", amount=111111, created=222222, currency="@CUR@", customer="@CUS@")
            obj["metadata"] = {"order_id": "@ORD@"}
            text = json.dumps(obj, separators=(",", ":"))
            text = text.replace('"amount":111111', '"amount":@AMT@')
            text = text.replace('"created":222222', '"created":@CRE@')
            self.templates[pm] = text

    def line(self, i: int, rnd: random.Random) -> str:
        t = self.templates[PM_TYPES[i % len(PM_TYPES)]]
        return (
            t.replace("@ID@", f"ch_{i:024d}")
            .replace("@AMT@", str(rnd.randint(50, 5_000_000)))
            .replace("@CRE@", str(1_700_000_000 + i))
            .replace("@CUR@", CURRENCIES[i % len(CURRENCIES)])
            .replace("@CUS@", f"cus_{rnd.randint(1, 10**7):014d}")
            .replace("@ORD@", str(i))
        )


class GeneratedStream(io.RawIOBase):
    """A readable stream of `n` generated charge lines (nothing kept in memory)."""

    def __init__(self, n: int) -> None:
        self.templates = ChargeTemplates()
        self.rnd = random.Random(7)
        self.n, self.i = n, 0
        self.buf = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self.buf) < size) and self.i < self.n:
            batch = [
                self.templates.line(j, self.rnd) for j in range(self.i, min(self.n, self.i + 2000))
            ]
            self.i += len(batch)
            self.buf += ("\n".join(batch) + "\n").encode()
        out, self.buf = (self.buf, b"") if size < 0 else (self.buf[:size], self.buf[size:])
        return out


def write_raw(path: pathlib.Path, n: int) -> int:
    stream = GeneratedStream(n)
    with open(path, "wb") as f:
        while chunk := stream.read(16 << 20):
            f.write(chunk)
    return path.stat().st_size


def convert_file(path: pathlib.Path, out_dir: pathlib.Path):
    def open_output(i: int) -> pa.NativeFile:
        return pa.OSFile(str(out_dir / f"part-{i:05d}.parquet"), "wb")

    with pa.OSFile(str(path), "rb") as src, open(out_dir / "quarantine.jsonl", "wb") as q:
        return convert_jsonl(
            src,
            resource="charges",
            tenant="stripeaep",
            account=None,
            api_version="2026-06-24.dahlia",
            open_output=open_output,
            quarantine=q,
            version=listing_version(1_700_000_000),
        )


def parse_floor(path: pathlib.Path, block_bytes: int = 16 << 20) -> float:
    """Seconds for pyarrow.json.read_json alone over the same whole-line blocks."""
    total = 0.0
    with pa.OSFile(str(path), "rb") as src:
        for block in _read_blocks(src, block_bytes):
            t = time.perf_counter()
            pj.read_json(pa.BufferReader(block))
            total += time.perf_counter() - t
    return total


def pandas_baseline(path: pathlib.Path, n: int, out: pathlib.Path) -> float:
    import pandas as pd

    with open(path, "rb") as f:
        lines = [f.readline() for _ in range(n)]
    t = time.perf_counter()
    df = pd.json_normalize([json.loads(line) for line in lines])
    df = df.astype({c: "string" for c in df.columns if df[c].dtype == object})
    df.to_parquet(out)
    return time.perf_counter() - t


def peak_rss_mb() -> float:
    """Peak RSS of this process. VmHWM belongs to the address space created by exec; ru_maxrss
    can carry the parent's peak across fork+exec on Linux, so it is only the fallback."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)

        def open_output(i: int) -> pa.NativeFile:
            return pa.OSFile(str(out / f"part-{i:05d}.parquet"), "wb")

        t = time.perf_counter()
        with open(out / "q.jsonl", "wb") as q:
            res = convert_jsonl(
                GeneratedStream(n),
                resource="charges",
                tenant="stripeaep",
                account=None,
                api_version="2026-06-24.dahlia",
                open_output=open_output,
                quarantine=q,
                version=listing_version(1_700_000_000),
            )
        seconds = time.perf_counter() - t
    peak_mb = peak_rss_mb()
    print(
        json.dumps(
            {
                "rows": res.rows,
                "quarantined": res.quarantined,
                "files": res.files,
                "bytes": res.bytes,
                "peak_rss_mb": round(peak_mb, 1),
                "seconds": round(seconds, 1),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--charges", type=int, default=200_000)
    ap.add_argument("--pandas-charges", type=int, default=20_000)
    ap.add_argument("--rss-charges", type=int, default=1_000_000, help="0 to skip")
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings (noisy machines)")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp)
        raw = tmp_path / "charges.jsonl"
        size = write_raw(raw, args.charges)
        print(
            f"raw: {args.charges:,} charges, {size / 1e6:,.0f} MB, {size / args.charges:,.0f} B/charge"
        )

        conv_s = floor_s = float("inf")
        for r in range(args.repeat):  # interleaved, best of N: same conditions for both
            out = tmp_path / f"xdm-{r}"
            out.mkdir()
            t = time.perf_counter()
            res = convert_file(raw, out)
            conv_s = min(conv_s, time.perf_counter() - t)
            assert res.rows == args.charges and res.quarantined == 0, res
            floor_s = min(floor_s, parse_floor(raw))
        rate = args.charges / conv_s
        print(
            f"convert_jsonl: {conv_s:.2f} s, {rate:,.0f} records/s, {res.files} file(s), "
            f"{res.bytes / 1e6:,.1f} MB Parquet, slow-path records {res.slow_path_records}"
        )
        floor_rate = args.charges / floor_s
        print(
            f"parse floor (pyarrow.json.read_json alone, same blocks): {floor_s:.2f} s, "
            f"{floor_rate:,.0f} records/s"
        )
        print(f"  ratio to parse floor: {rate / floor_rate:.2f} (target >= 0.5)")

        n_pd = min(args.pandas_charges, args.charges)
        pd_s = pandas_baseline(raw, n_pd, tmp_path / "pandas.parquet")
        pd_rate = n_pd / pd_s
        print(
            f"pandas json_normalize + to_parquet ({n_pd:,} charges): {pd_s:.2f} s, {pd_rate:,.0f} records/s"
        )
        print(f"  speed-up over pandas: {rate / pd_rate:.1f}x (target >= 10x)")

    if args.rss_charges:
        proc = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(args.rss_charges)],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ),
        )
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"peak RSS converting {args.rss_charges:,} charges (subprocess): "
            f"{info['peak_rss_mb']:,.0f} MB (target <= 600 MB); {info['rows']:,} rows, "
            f"{info['files']} file(s), {info['bytes'] / 1e6:,.0f} MB, {info['seconds']} s"
        )


if __name__ == "__main__":
    main()
