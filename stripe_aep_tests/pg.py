"""A throwaway PostgreSQL server for the tests, started with `initdb`/`pg_ctl` (no container).

Why a real server: the PostgreSQL ledger, partition locks and Stripe budgets rely on what only a
server gives (transactions across processes, advisory locks released when a session dies), so they
are tested against one. `.ci/run` apt-installs `postgresql` when it is missing; without `initdb` the
tests that need it are skipped with that reason (see the `postgres_url` fixture in conftest.py).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

#: the skip reason when no server can be started
NO_POSTGRES = (
    "PostgreSQL's initdb/pg_ctl are neither on PATH nor in /usr/lib/postgresql/*/bin: "
    "`apt-get install -y postgresql` (.ci/run does)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_url(settings: dict[str, str], db_name: str | None = None) -> str:
    """The `postgresql://…` URL of a database of the server `postgres_server` yielded."""
    return (
        f"postgresql://{settings['DAGSTER_PG_USERNAME']}:{settings['DAGSTER_PG_PASSWORD']}"
        f"@{settings['DAGSTER_PG_HOST']}:{settings['DAGSTER_PG_PORT']}/"
        f"{db_name or settings['DAGSTER_PG_DB']}"
    )


def create_database(settings: dict[str, str], db_name: str) -> str:
    """A new empty database on the server; returns its URL."""
    import psycopg

    with psycopg.connect(postgres_url(settings, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    return postgres_url(settings, db_name)


def _pg_binary(name: str) -> str | None:
    """`initdb`/`pg_ctl` on PATH, else Debian's versioned folder (not on PATH by default)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return None


def postgres_binaries() -> tuple[str, str] | None:
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    return (initdb, pg_ctl) if initdb and pg_ctl else None


@contextmanager
def postgres_server(db_name: str = "dagster"):
    """A throwaway PostgreSQL server on 127.0.0.1 and a free port, with password authentication and
    an empty database; yields its `DAGSTER_PG_*` settings. PostgreSQL refuses to run as root, so as
    root the cluster belongs to the `postgres` user Debian's package creates."""
    binaries = postgres_binaries()
    if binaries is None:
        raise FileNotFoundError("initdb/pg_ctl not found")
    initdb, pg_ctl = binaries
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="stripe-aep-pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise FileNotFoundError(
                "PostgreSQL refuses to run as root and there is no `postgres` user: "
                "`apt-get install -y postgresql` creates it"
            ) from None
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    password = os.urandom(12).hex()
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if as_user:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    data = root / "data"
    port = free_port()
    settings = {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(port),
        "DAGSTER_PG_DB": db_name,
        "DAGSTER_PG_USERNAME": "dagster",
        "DAGSTER_PG_PASSWORD": password,
    }

    def run(*cmd: str) -> None:
        done = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{cmd[0]} failed:\n{done.stdout}\n{done.stderr}"

    started = False
    try:
        run(
            initdb, "-D", str(data), "-U", "dagster", f"--pwfile={pwfile}", "-E", "UTF8",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
        )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root}"
        run(pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "start")
        started = True
        create_database(settings, db_name)
        yield settings
    finally:
        if started:
            subprocess.run(
                [*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                timeout=120,
            )
        shutil.rmtree(root, ignore_errors=True)
