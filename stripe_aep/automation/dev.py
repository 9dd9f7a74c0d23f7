"""`make dev`: the emulators, `stripe-aep setup` and the Dagster UI, in one command.

Why a launcher and not three lines of Makefile: the three must share one environment (the emulator
URLs and local credentials), the UI must not start before the emulators answer and the AEP datasets
exist, and Ctrl-C must stop the emulators too. With `STRIPE_AEP_DEV_EMULATORS=0` it starts only the
UI, against whatever the environment points at (real Stripe and AEP: run `stripe-aep doctor` and
`stripe-aep setup` first).

The instance lives in `.dagster_home/` (SQLite, `dagster.yaml` of the repository), so runs, backfills,
schedules and sensor state survive a restart. Schedules and sensors are listed under Automation,
STOPPED, ready to be switched on.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STRIPE_PORT = 12111
AEP_PORT = 12112
UI_HOST, UI_PORT = "127.0.0.1", 3000

#: What the emulators accept (docs/emulators.md); set for the three processes, replacing any value
#: already exported so a real credential is never mixed with a local endpoint.
EMULATOR_ENV = {
    "STRIPE_API_KEY": "sk_test_emulator",
    "STRIPE_API_BASE": f"http://127.0.0.1:{STRIPE_PORT}",
    "AEP_CLIENT_ID": "stripe-aep-local",
    "AEP_CLIENT_SECRET": "local-secret",
    "AEP_TENANT_ID": "stripeaep",
    "AEP_ORG_ID": "0000000000000000000000AA@AdobeOrg",
    "AEP_SANDBOX": "prod",
    "AEP_IMS_URL": f"http://127.0.0.1:{AEP_PORT}",
    "AEP_PLATFORM_URL": f"http://127.0.0.1:{AEP_PORT}",
}
#: Emulator history: 7 days, today included (`stripe-aep emulate --days 7`).
EMULATOR_DAYS = 7

#: `dagster dev` announces that `dg dev` supersedes it; under `make dev` nobody can act on that.
_SUPERSEDED = "ignore:Function `dev_command` is superseded"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _say(text: str) -> None:
    print(f"make dev: {text}", flush=True)


def start_emulators(env: dict[str, str], timeout_s: float = 60.0) -> subprocess.Popen | None:
    """Start `stripe-aep emulate --live` and wait until both emulators answer; None if they already do."""
    taken = [p for p in (STRIPE_PORT, AEP_PORT) if _listening(p)]
    if len(taken) == 2:
        _say(f"using the emulators already listening on :{STRIPE_PORT} and :{AEP_PORT}")
        return None
    if taken:
        raise SystemExit(
            f"make dev: port {taken[0]} is in use by something else; stop it (or the emulator "
            "started by `make emulate`) and run `make dev` again"
        )
    cmd = [
        sys.executable,
        "-m",
        "stripe_aep.cli",
        "emulate",
        "--live",
        "--days",
        str(EMULATOR_DAYS),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: list[str] = []

    def relay() -> None:  # keep the pipe drained and show what the emulators say
        for line in proc.stdout:
            lines.append(line)
            print(f"emulators: {line}", end="", flush=True)

    threading.Thread(target=relay, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not (_listening(STRIPE_PORT) and _listening(AEP_PORT)):
        if proc.poll() is not None:
            raise SystemExit(
                f"make dev: the emulators exited ({proc.returncode}): {''.join(lines)}"
            )
        if time.monotonic() > deadline:
            proc.terminate()
            raise SystemExit(f"make dev: the emulators did not answer within {timeout_s:.0f} s")
        time.sleep(0.2)
    return proc


def dagster_home() -> Path:
    home = ROOT / ".dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def main() -> int:
    env = dict(os.environ)
    use_emulators = env.get("STRIPE_AEP_DEV_EMULATORS", "1").strip() != "0"
    emulators = None
    if use_emulators:
        env.update(EMULATOR_ENV)
        today = dt.datetime.now(dt.UTC).date()
        env.setdefault("STRIPE_START_DATE", (today - dt.timedelta(EMULATOR_DAYS - 1)).isoformat())
        env.setdefault("STRIPE_AEP_DATA_DIR", str(ROOT / "data" / "local"))
        emulators = start_emulators(env)
    try:
        if use_emulators:
            _say("creating the AEP schemas and datasets (stripe-aep setup)")
            setup = subprocess.run([sys.executable, "-m", "stripe_aep.cli", "setup"], env=env)
            if setup.returncode != 0:
                _say(f"stripe-aep setup failed ({setup.returncode}); see above")
                return setup.returncode
        data_dir = env.get("STRIPE_AEP_DATA_DIR")
        if data_dir and "://" not in data_dir:
            env["STRIPE_AEP_DATA_DIR"] = os.path.abspath(data_dir)  # the UI runs from DAGSTER_HOME
        env["DAGSTER_HOME"] = str(dagster_home())
        warnings = env.get("PYTHONWARNINGS")
        env["PYTHONWARNINGS"] = f"{warnings},{_SUPERSEDED}" if warnings else _SUPERSEDED
        _say(
            f"Dagster UI on http://{UI_HOST}:{UI_PORT} (instance in {env['DAGSTER_HOME']}); "
            "schedules and sensors are under Automation, switched off until you switch them on"
        )
        ui = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster",
                "dev",
                "-w",
                str(ROOT / "workspace.yaml"),
                "-h",
                UI_HOST,
                "-p",
                str(UI_PORT),
            ],
            # from DAGSTER_HOME: a dagster.yaml in the working folder that is not the instance's
            # own makes Dagster warn at every start
            cwd=env["DAGSTER_HOME"],
            env=env,
        )
        try:
            return ui.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached dagster dev too (same process group): let it shut down cleanly
            try:
                return ui.wait(timeout=30)
            except subprocess.TimeoutExpired:
                ui.send_signal(signal.SIGTERM)
                return ui.wait()
    finally:
        if emulators is not None:
            emulators.terminate()
            try:
                emulators.wait(timeout=10)
            except subprocess.TimeoutExpired:
                emulators.kill()


if __name__ == "__main__":
    sys.exit(main())
