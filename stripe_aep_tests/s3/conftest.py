"""A real S3-compatible server for the object-store lake tests: `moto_server` in its own process.

Why a separate process and not moto's in-process mock: pyarrow's S3 client is the AWS C++ SDK, which
talks HTTP and never sees Python-level patches; and a server thread inside the test process shares
the GIL with pyarrow's stream destructors (a stuck upload would hang the test instead of failing).

The server's request log (werkzeug's access log on stderr) is the measurement of what the lake costs:
`S3Server.requests_since(mark)` returns the requests made since a mark, so tests assert how many
ListObjects calls a run makes and which prefixes they list.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

#: Credentials the tests give the lake (moto accepts any); the secret is built at run time so no
#: key-like literal sits in the repository, and the tests check it never leaks.
ACCESS_KEY_ID = "AKIA" + "STRIPEAEPTEST01"
SECRET_ACCESS_KEY = "s3secret/" + uuid.uuid4().hex + "Xy+Z"
REGION = "eu-west-1"

_LINE = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/1\.[01]"')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours error and DELETE lines


@dataclass(frozen=True)
class S3Request:
    method: str
    bucket: str
    key: str
    query: dict[str, str]

    @property
    def is_list(self) -> bool:
        return self.method == "GET" and self.query.get("list-type") == "2"

    @property
    def is_copy_or_single_put(self) -> bool:
        """A PUT that is not a part of a multipart upload: a server-side copy (pyarrow's `move`),
        a "folder/" marker, or a single-request upload. The lake's writes are all multipart."""
        return self.method == "PUT" and "partNumber" not in self.query and bool(self.key)

    @property
    def prefix(self) -> str:
        return self.query.get("prefix", "")


@dataclass
class S3Server:
    endpoint: str
    log_path: Path

    def _lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def mark(self) -> int:
        """A point in the request log; `requests_since` returns what came after it."""
        self._sync()
        return len(self._lines())

    def _sync(self) -> None:
        """Wait until every request answered so far is in the log: the server logs a request after
        answering it, so make one more and wait for its line."""
        import requests

        probe = f"/sync-{uuid.uuid4().hex}"
        requests.head(self.endpoint + probe, timeout=10)
        deadline = time.monotonic() + 10
        while probe not in self.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError("moto_server did not log the sync request")
            time.sleep(0.02)

    def requests_since(self, mark: int) -> list[S3Request]:
        self._sync()
        out = []
        for line in self._lines()[mark:]:
            match = _LINE.search(_ANSI.sub("", line))
            if not match or "/sync-" in match.group(2):
                continue
            url = urlsplit(match.group(2))
            bucket, _, key = url.path.lstrip("/").partition("/")
            query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            out.append(S3Request(match.group(1), bucket, unquote(key), query))
        return out

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in the bucket under `prefix` (boto3, independent of the code under test)."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """`moto_server` on 127.0.0.1 and a free port, in its own process, for the whole session."""
    moto_server = Path(sys.executable).with_name("moto_server")
    if not moto_server.exists():
        pytest.fail(
            "moto_server is not installed: run `make install` (moto[server] is a test extra)"
        )
    log_path = tmp_path_factory.mktemp("moto") / "requests.log"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    server = S3Server(f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
    try:
        yield server
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The standard AWS variables pointing at the test server (what a deployment sets)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    env = {
        "AWS_ENDPOINT_URL": s3_server.endpoint,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_server_bucket_factory(s3_server, s3_env):
    """Creates fresh buckets (in the test's region); returns their names."""

    def create() -> str:
        name = f"lake-{uuid.uuid4().hex[:12]}"
        s3_server.client().create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        return name

    return create


@pytest.fixture
def s3_bucket(s3_server_bucket_factory):
    """A fresh bucket per test; yields its name."""
    return s3_server_bucket_factory()


@pytest.fixture
def s3_root(s3_bucket):
    """`STRIPE_AEP_DATA_DIR` for a lake under a prefix of the test's bucket."""
    return f"s3://{s3_bucket}/stripe-aep"
