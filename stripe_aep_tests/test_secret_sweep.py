"""No secret leaves the process: failing runs are swept for every secret in every encoding.

Each scenario fails the way an operator's first run fails — a key Stripe rejects (401), a key with a
stray newline or control character, a wrong Adobe client secret, an unreachable API — through the real
entry points: `dagster asset materialize` on a real `DagsterInstance` (a temporary `DAGSTER_HOME`: run
and event-log SQLite storage, compute logs) and `stripe-aep doctor`. Then every byte the runs left
behind is searched for the secret: the whole `DAGSTER_HOME` (event log, run index, compute logs), the
data folder (every file, decompressed where it is compressed), and the CLI's stdout and stderr.

The encoded forms are computed here independently of `stripe_aep.secrets` (a test must not share the
code it checks): raw, repr / JSON-escaped, URL-encoded, base64 (bare and as HTTP Basic credentials),
and the key's body without its `sk_test_` prefix.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stripe_aep.emulators.aep_api import AepEmulator
from stripe_aep_tests.aep.conftest import env_for
from stripe_aep_tests.conftest import ACCOUNT_START, TEST_KEY
from stripe_aep_tests.paths import REPO_ROOT

DAY = ACCOUNT_START.isoformat()
#: distinct per scenario, so a leak is attributed to the scenario that caused it
KEY_REJECTED = "sk_live_" + "SweepRejected4Kq9ZxW2mPv7"  # the emulator serves test mode: 401
KEY_NEWLINE = "sk_test_SweepNewline8Hj3LpQ5rT0e\n"
KEY_CONTROL = "sk_test_SweepCtrlA7Bq\x07C4dE9fG2hJ5k"
KEY_UNREACHABLE = "sk_test_SweepUnreachable6Wn1Xc8Vb"
AEP_WRONG_SECRET = "p8e-SweepWrongSecret-Zr5Tq2Ny9Mk4"


def encoded_forms(secret: str, *, user: str | None = None) -> set[str]:
    """The secret as it could appear in text: raw, escaped, URL-encoded, base64, Basic auth."""
    core = secret.strip()
    forms = {
        secret,
        core,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
        quote(core, safe=""),
    }
    for text in (core, f"{core}:", f"{user}:{core}" if user else None, f"Bearer {core}"):
        if text:
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                forms.add(encode(text.encode()).decode().rstrip("="))
    if core.startswith(("sk_", "rk_")):
        forms.add(core.split("_", 2)[2])  # the key's body, without sk_test_
    # each run of printable characters long enough to identify the secret on its own
    for chunk in "".join(c if c.isprintable() else "\0" for c in core).split("\0"):
        if len(chunk) >= 10:
            forms.add(chunk)
    return {f for f in forms if len(f) >= 8}


def _readable_bytes(path: Path) -> bytes:
    """A file's bytes, plus its decompressed content when it is zstd JSON lines or Parquet."""
    data = path.read_bytes()
    if path.suffix == ".zst":
        data += pa.input_stream(str(path), compression="zstd").read()
    elif path.suffix == ".parquet":
        data += json.dumps(pq.read_table(path).to_pylist(), default=str).encode()
    return data


def find_leaks(forms: set[str], roots: list[Path], texts: dict[str, str]) -> list[str]:
    """Where any form occurs: `file: form` for files under `roots`, `name: form` for texts."""
    leaks = []
    encoded = {f: f.encode() for f in forms}
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = _readable_bytes(path)
            leaks += [f"{path}: {f!r}" for f, b in encoded.items() if b in data]
    for name, text in texts.items():
        leaks += [f"{name}: {f!r}" for f in forms if f in text]
    return leaks


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "AEP_"))}
    env.update(
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
        STRIPE_AEP_DATA_DIR=str(tmp_path / "data"),
        STRIPE_START_DATE=DAY,
        STRIPE_MAX_RPS="1000",
        STRIPE_VISIBILITY_LAG_SECONDS="0",
        # `dagster` would otherwise copy the repo's instance settings; the default instance on a
        # temporary home keeps the run and event-log storage and the compute logs in that folder
        PYTHONPATH=str(REPO_ROOT),
    )
    env.update(extra)
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    return env


def _run(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env=env, cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=timeout
    )


def materialize(selection: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    dagster = str(Path(sys.executable).with_name("dagster"))
    return _run(
        [dagster, "asset", "materialize", "-m", "stripe_aep.definitions", "--select", selection,
         "--partition", DAY],
        env,
    )  # fmt: skip


def doctor(env: dict[str, str]) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "stripe_aep.cli", "doctor"], env, timeout=120)


def _event_log_text(home: Path) -> str:
    """Every event of every run in the instance, serialized (the positive control of the sweep)."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        runs = instance.get_runs()
        return "\n".join(
            dg.serialize_value(event) for run in runs for event in instance.all_logs(run.run_id)
        )


def assert_no_leak(tmp_path: Path, forms: set[str], procs: dict[str, subprocess.CompletedProcess]):
    texts = {}
    for name, proc in procs.items():
        texts[f"{name} stdout"] = proc.stdout
        texts[f"{name} stderr"] = proc.stderr
    roots = [tmp_path / "dagster_home", tmp_path / "data"]
    leaks = find_leaks(forms, [r for r in roots if r.exists()], texts)
    assert not leaks, "secret found:\n" + "\n".join(leaks)


def test_the_sweep_finds_a_secret_in_any_of_its_forms(tmp_path):
    """Positive control: the sweep is able to fail."""
    secret = "p8e-ControlSecret-Ab3Cd5Ef7Gh9"
    forms = encoded_forms(secret, user="clientid123")
    basic = base64.b64encode(f"clientid123:{secret}".encode()).decode()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "basic.log").write_text(f"Authorization: Basic {basic}\n")
    (tmp_path / "a" / "form.bin").write_bytes(b"\x00\x01client_secret=" + quote(secret).encode())
    leaks = find_leaks(forms, [tmp_path / "a"], {"stdout": json.dumps({"k": secret + "\n"})})
    assert any("basic.log" in leak for leak in leaks)
    assert any("form.bin" in leak for leak in leaks)
    assert any(leak.startswith("stdout") for leak in leaks)


@pytest.mark.parametrize(
    "key,expected",
    [
        (KEY_REJECTED, "401"),
        (KEY_NEWLINE, "trailing newline"),
        (KEY_CONTROL, "control character U+0007"),
    ],
    ids=["rejected-401", "trailing-newline", "control-character"],
)
def test_failing_stripe_key_never_leaks(stripe_emulator, tmp_path, key, expected):
    env = _env(tmp_path, STRIPE_API_KEY=key, STRIPE_API_BASE=stripe_emulator.url)
    run = materialize("stripe/charges", env)
    checked = doctor(env)
    assert_no_leak(tmp_path, encoded_forms(key), {"materialize": run, "doctor": checked})
    assert run.returncode != 0
    events = _event_log_text(tmp_path / "dagster_home")
    # the failure is recorded in the event log, names the variable and says what is wrong
    assert "STEP_FAILURE" in events and "STRIPE_API_KEY" in events and expected in events
    assert checked.returncode == 1
    assert "STRIPE_API_KEY" in checked.stdout and expected in checked.stdout
    if expected != "401":
        assert len(stripe_emulator.log) == 0  # refused at start, before any request


def test_wrong_aep_client_secret_never_leaks(stripe_emulator, tmp_path):
    with AepEmulator() as aep:
        aep_env = {**env_for(aep), "AEP_CLIENT_SECRET": AEP_WRONG_SECRET}
        env = _env(
            tmp_path, STRIPE_API_KEY=TEST_KEY, STRIPE_API_BASE=stripe_emulator.url, **aep_env
        )
        run = materialize("stripe/charges,xdm/charges,aep/charges", env)
        checked = doctor(env)
    assert run.returncode != 0
    events = _event_log_text(tmp_path / "dagster_home")
    assert "STEP_FAILURE" in events and "AEP_CLIENT_SECRET" in events
    assert "ASSET_MATERIALIZATION" in events  # raw and XDM succeeded: the data folder has files
    assert any((tmp_path / "data").rglob("*.parquet"))
    assert checked.returncode == 1 and "AEP_CLIENT_SECRET" in checked.stdout


def test_unreachable_apis_never_leak(tmp_path):
    dead = f"http://127.0.0.1:{_free_port()}"
    env = _env(
        tmp_path,
        STRIPE_API_KEY=KEY_UNREACHABLE,
        STRIPE_API_BASE=dead,
        AEP_CLIENT_ID="sweepclient0123456789",
        AEP_CLIENT_SECRET=AEP_WRONG_SECRET,
        AEP_ORG_ID="SWEEP0123456789@AdobeOrg",
        AEP_TENANT_ID="stripeaep",
        AEP_IMS_URL=dead,
        AEP_PLATFORM_URL=dead,
    )
    checked = doctor(env)
    # the delivery step sends the secret to IMS first; IMS cannot be reached (after the retries)
    run = materialize("aep/charges", env)
    forms = encoded_forms(KEY_UNREACHABLE) | encoded_forms(
        AEP_WRONG_SECRET, user="sweepclient0123456789"
    )
    assert_no_leak(tmp_path, forms, {"doctor": checked, "materialize": run})
    assert checked.returncode == 1
    assert "network error" in checked.stdout and "cannot reach Adobe IMS" in checked.stdout
    assert run.returncode != 0
    events = _event_log_text(tmp_path / "dagster_home")
    assert "STEP_FAILURE" in events and "cannot reach Adobe IMS" in events


def test_ledger_url_password_never_leaks(stripe_emulator, tmp_path, postgres_url):
    """STRIPE_AEP_LEDGER_URL's password: a wrong one fails the step (its Stripe budget connects first), a
    right one runs it; neither shows in any log, event, file or output."""
    password = postgres_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    wrong_password = "SweepPgWrong5Tz8Qc1Lm"
    wrong = postgres_url.replace(f":{password}@", f":{wrong_password}@")
    base = {"STRIPE_API_KEY": TEST_KEY, "STRIPE_API_BASE": stripe_emulator.url}
    (tmp_path / "bad").mkdir()
    bad_env = _env(tmp_path / "bad", STRIPE_AEP_LEDGER_URL=wrong, **base)
    failed = materialize("stripe/charges", bad_env)
    (tmp_path / "good").mkdir()
    good_env = _env(tmp_path / "good", STRIPE_AEP_LEDGER_URL=postgres_url, **base)
    ran = materialize("stripe/charges", good_env)
    checked = doctor(good_env)
    forms = encoded_forms(password) | encoded_forms(wrong_password)
    for scenario in ("bad", "good"):
        assert_no_leak(
            tmp_path / scenario, forms, {"materialize": failed, "run": ran, "doctor": checked}
        )
    assert failed.returncode != 0
    events = _event_log_text(tmp_path / "bad" / "dagster_home")
    assert (
        "STEP_FAILURE" in events and "cannot connect to the Stripe rate budget database" in events
    )
    assert "STRIPE_AEP_LEDGER_URL" in events and ":***@" in events
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "ASSET_MATERIALIZATION" in _event_log_text(tmp_path / "good" / "dagster_home")
