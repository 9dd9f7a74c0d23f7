"""The lake on a real S3-compatible server: atomic writes, request costs, settings, secrets."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from stripe_aep.config import ConfigError
from stripe_aep.lake import SPOOL_PREFIX, Lake, s3_options
from stripe_aep.secrets import SecretMasker
from stripe_aep.stripe.rawstore import RawPartition, day_bounds
from stripe_aep_tests.s3.conftest import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY

DAY = dt.date(2026, 11, 10)


def test_round_trip_lists_only_the_folder_prefix_and_leaves_no_temporaries(
    s3_server, s3_bucket, s3_root
):
    lake = Lake(s3_root)
    mark = s3_server.mark()
    with lake.write_atomic("x/1.jsonl.zst", compression="zstd") as out:
        out.write(b'{"a":1}\n')
    lake.write_json("x/1.meta.json", {"n": 1})
    lake.write_json("y/other.json", {"n": 2})
    assert [f.path for f in lake.list_files("x")] == ["x/1.jsonl.zst", "x/1.meta.json"]
    assert lake.open_input("x/1.jsonl.zst", compression="zstd").read() == b'{"a":1}\n'
    assert lake.read_json("x/1.meta.json") == {"n": 1}
    assert lake.list_files("missing") == []
    assert lake.exists("x/1.meta.json") and not lake.exists("x/nope.json")
    assert lake.size("x/1.meta.json") == len(lake.read_bytes("x/1.meta.json"))
    assert lake.size("x/nope.json") is None
    requests = s3_server.requests_since(mark)
    # Whole objects only: no temporary key, no "folder/" marker object, nothing copied server-side.
    assert s3_server.keys(s3_bucket) == [
        "stripe-aep/x/1.jsonl.zst",
        "stripe-aep/x/1.meta.json",
        "stripe-aep/y/other.json",
    ]
    assert not [r for r in requests if r.is_copy_or_single_put or r.method == "DELETE"]
    # Exactly the two listings asked for, each of its folder's prefix only; `exists` and `size`
    # are HEAD requests (pyarrow's `get_file_info` would list the key as a prefix on a miss).
    assert [r.prefix for r in requests if r.is_list] == ["stripe-aep/x/", "stripe-aep/missing/"]
    assert all(r.bucket == s3_bucket for r in requests)


def test_failed_write_publishes_nothing_and_keeps_the_previous_version(
    s3_server, s3_bucket, s3_root, tmp_path, monkeypatch
):
    # A temporary folder of this test's own: the end-to-end tests run beside this suite and spool
    # their own uploads into the shared one.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    lake = Lake(s3_root)
    lake.write_json("m/manifest.json", {"version": 1})
    with pytest.raises(RuntimeError), lake.write_atomic("m/manifest.json") as out:
        out.write(b'{"version": 2, "trunc')
        assert [p for p in os.listdir(tmp_path) if p.startswith(SPOOL_PREFIX)]
        raise RuntimeError("crash mid-write")
    assert lake.read_json("m/manifest.json") == {"version": 1}
    stream, staged = lake.open_staged("m/part0.parquet")
    stream.write(b"half a part")
    stream.close()
    staged.discard()
    assert s3_server.keys(s3_bucket) == ["stripe-aep/m/manifest.json"]
    # No spool file is left behind either.
    assert not [p for p in os.listdir(tmp_path) if p.startswith(SPOOL_PREFIX)]


def test_sigkill_mid_write_leaves_the_bucket_as_it_was(s3_server, s3_bucket, s3_root, tmp_path):
    """A run pod killed while writing a raw window: the partition's cursor and files are unchanged."""
    lake = Lake(s3_root)
    part = RawPartition(lake, "charges", DAY)
    start, _ = day_bounds(DAY)
    part.write(start, start + 3600, [b'{"id": "ch_1", "created": %d}' % start], {"account": None})
    before = s3_server.keys(s3_bucket)
    ready = tmp_path / "ready"
    child = textwrap.dedent(
        f"""
        import datetime as dt, pathlib, time
        from stripe_aep.lake import Lake
        from stripe_aep.stripe.rawstore import RawPartition, day_bounds
        part = RawPartition(Lake({s3_root!r}), "charges", dt.date.fromisoformat({DAY.isoformat()!r}))
        start, _ = day_bounds(part.day)

        def lines():
            for i in range(5000):
                yield b'{{"id": "ch_x%d", "created": %d}}' % (i, start + 3600)
            pathlib.Path({str(ready)!r}).write_text("ready")
            time.sleep(60)
            yield b'{{"id": "ch_last", "created": %d}}' % (start + 3601)

        part.write(start + 3600, start + 7200, lines(), {{"account": None}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], start_new_session=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None, "the writer exited early"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)
    assert s3_server.keys(s3_bucket) == before
    assert part.cursor() == start + 3600
    assert [f.stem for f in part.files()] == [f"{start}-{start + 3600}"]


def test_settings_come_from_the_standard_aws_variables():
    env = {
        "AWS_ENDPOINT_URL": "http://generic:9000",
        "AWS_ENDPOINT_URL_S3": "https://s3.example.test:9443/",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_SESSION_TOKEN": "token-" + SECRET_ACCESS_KEY,
    }
    options = s3_options(env)
    assert options == {
        "endpoint_override": "https://s3.example.test:9443",  # the S3-specific one wins
        "scheme": "https",
        "region": REGION,  # AWS_REGION wins over AWS_DEFAULT_REGION
        "access_key": ACCESS_KEY_ID,
        "secret_key": SECRET_ACCESS_KEY,
        "session_token": "token-" + SECRET_ACCESS_KEY,
    }
    fallback = s3_options({"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_DEFAULT_REGION": "x-1"})
    assert fallback == {"endpoint_override": "http://minio:9000", "scheme": "http", "region": "x-1"}
    # Neither key: the SDK's own chain (profile, web identity, instance role) applies.
    assert s3_options({}) == {}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID}, "AWS_SECRET_ACCESS_KEY"),
        ({"AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}, "AWS_ACCESS_KEY_ID"),
        (
            {"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY + "\n"},
            "AWS_SECRET_ACCESS_KEY",
        ),
        ({"AWS_ENDPOINT_URL": "minio:9000"}, "AWS_ENDPOINT_URL"),
        (
            {"AWS_ENDPOINT_URL_S3": f"http://u:{SECRET_ACCESS_KEY}@minio:9000"},
            "AWS_ENDPOINT_URL_S3",
        ),
    ],
)
def test_bad_settings_fail_naming_the_variable_never_the_secret(env, variable):
    with pytest.raises(ConfigError) as err:
        Lake("s3://bucket/prefix", environ=env)
    assert err.value.variable == variable
    assert not SecretMasker([SECRET_ACCESS_KEY]).contains_secret(str(err.value))


def test_the_secret_key_never_appears_in_errors_or_reprs(s3_server, s3_env, s3_bucket):
    masker = SecretMasker([SECRET_ACCESS_KEY])
    lake = Lake(f"s3://{s3_bucket}/p")
    texts = [repr(lake), str(lake.fs), repr(lake.fs), lake.full_path("a/b.json")]
    missing_bucket = Lake("s3://no-such-bucket-stripe-aep/p")
    for action in (
        lambda: missing_bucket.write_json("a.json", {}),
        lambda: missing_bucket.read_json("a.json"),
        lambda: lake.read_json("missing.json"),
        lambda: Lake(
            f"s3://{s3_bucket}/p", environ={**s3_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
        ).write_json("a.json", {}),
    ):
        with pytest.raises(OSError) as err:
            action()
        chain, exc = [], err.value
        while exc is not None:
            chain.append(f"{type(exc).__name__}: {exc}")
            exc = exc.__cause__ or exc.__context__
        texts.extend(chain)
    assert any("no-such-bucket-stripe-aep" in t for t in texts)  # the errors say what failed
    leaked = [t for t in texts if masker.contains_secret(t)]
    assert leaked == []
