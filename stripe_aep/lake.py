"""The lake: raw, XDM, quarantine and index files under `STRIPE_AEP_DATA_DIR`, through `pyarrow.fs`.

Why `pyarrow.fs` and not `open()`: the same code must run on a laptop (a local folder) and on Kubernetes
(`s3://bucket/prefix`, `gs://…`), so no module on the data path touches local paths directly.

Every write is atomic: a file appears whole under its name or not at all, so state derived from file
names (the `created` cursor) can never describe half a file. How depends on the store:

- a local folder: data goes to a temporary name beside the file and is renamed into place (a rename is
  atomic within a file system);
- an object store: there is no rename (pyarrow's `move` is a server-side copy plus a delete: a second
  full write of every byte, and a temporary object left behind by a crash in between), and an upload
  stream cannot be aborted from Python — closing it, or letting it be garbage-collected after an
  error, *completes* the upload with whatever was written. So a write is spooled to a local temporary
  file first and uploaded to its final key in one native call (`pyarrow.fs.copy_files`) only once the
  writer has finished. A PUT (or a completed multipart upload) is atomic per object on S3, so readers
  see the previous version or the whole new one; an error or a kill before the upload leaves nothing
  in the bucket, a kill during it leaves an incomplete multipart upload that is invisible to readers
  (a bucket lifecycle rule `AbortIncompleteMultipartUpload` reclaims its storage).

A set of files that belong together (a raw window and its sidecar; XDM parts and their manifest) is
published in an order where the file readers key on comes last: see `stripe_aep.stripe.rawstore` and
`stripe_aep.xdm_lake`.

Object-store settings come from the standard AWS variables (see `s3_filesystem`); the secret access
key is passed to pyarrow and never shown: the settings error names variables, never values.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from stripe_aep.config import ConfigError, check_text

TMP_MARKER = ".tmp-"
#: Where object-store writes are spooled before their upload (beside the OS temporary folder).
SPOOL_PREFIX = "stripe-aep-spool-"


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str] | tuple[None, None]:
    for name in names:
        value = env.get(name)
        if value and value.strip():
            return name, value
    return None, None


def s3_options(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for `pyarrow.fs.S3FileSystem`, from the standard AWS variables.

    pyarrow's S3 client (the AWS C++ SDK) reads `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
    `AWS_SESSION_TOKEN`, `~/.aws/*` and instance metadata by itself, but the endpoint and region it
    only half-honours depending on the SDK build (`AWS_ENDPOINT_URL_S3` not at all, and `from_uri`
    resolves the region with an extra request to AWS). So endpoint and region are read here and passed
    explicitly: `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` (an S3-compatible server: MinIO, Ceph,
    moto); `AWS_REGION`, else `AWS_DEFAULT_REGION`. Keys set in the environment are passed explicitly
    too (a key id without its secret fails here, naming the missing variable); with neither, the SDK's
    own chain applies (profiles, IRSA web identity, instance metadata).
    """
    env = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    endpoint_var, endpoint = _first(env, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    if endpoint_var and endpoint:
        check_text(endpoint_var, endpoint, secret=False)
        if "@" in endpoint:  # checked first: the value is not shown, it may hold a password
            raise ConfigError(
                endpoint_var,
                "carries credentials in the URL",
                "Give them through AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead",
            )
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                endpoint_var,
                f"{endpoint!r} is not an http(s) URL",
                "Set it to the S3 endpoint, e.g. https://s3.eu-west-1.amazonaws.com or "
                "http://minio:9000, or unset it to use AWS",
            )
        options["endpoint_override"] = endpoint.rstrip("/")
        options["scheme"] = parts.scheme
    region_var, region = _first(env, "AWS_REGION", "AWS_DEFAULT_REGION")
    if region_var and region:
        check_text(region_var, region, secret=False)
        options["region"] = region
    key_id, secret = env.get("AWS_ACCESS_KEY_ID") or "", env.get("AWS_SECRET_ACCESS_KEY") or ""
    if bool(key_id) != bool(secret):
        missing = "AWS_SECRET_ACCESS_KEY" if key_id else "AWS_ACCESS_KEY_ID"
        raise ConfigError(
            missing,
            "not set while its pair is",
            "Set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (to use the AWS "
            "credential chain: profile, web identity, instance role)",
        )
    if key_id:
        check_text("AWS_ACCESS_KEY_ID", key_id, secret=False)
        check_text("AWS_SECRET_ACCESS_KEY", secret, secret=True)
        options["access_key"] = key_id
        options["secret_key"] = secret
        token = env.get("AWS_SESSION_TOKEN")
        if token:
            check_text("AWS_SESSION_TOKEN", token, secret=True)
            options["session_token"] = token
    return options


def s3_filesystem(bucket: str, environ: Mapping[str, str] | None = None) -> pafs.S3FileSystem:
    """The S3 file system of a lake in `bucket`, configured from the AWS variables (`s3_options`)."""
    options = s3_options(environ)
    if "region" not in options and "endpoint_override" not in options:
        # What `FileSystem.from_uri` does: ask AWS where the bucket lives (one HEAD request).
        options["region"] = pafs.resolve_s3_region(bucket)
    return pafs.S3FileSystem(**options)


@dataclass(frozen=True)
class LakeFile:
    path: str  # relative to the lake root, with "/" separators
    size: int


class StagedFile:
    """A file being written under a temporary name; `commit()` publishes it whole, `discard()`
    drops it."""

    def size(self) -> int:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        raise NotImplementedError


@dataclass
class RenamedFile(StagedFile):
    """Local folder: a temporary file beside the final one, renamed into place."""

    fs: pafs.FileSystem
    tmp: str
    final: str

    def size(self) -> int:
        return int(self.fs.get_file_info(self.tmp).size or 0)

    def commit(self) -> None:
        self.fs.move(self.tmp, self.final)

    def discard(self) -> None:
        try:
            self.fs.delete_file(self.tmp)
        except FileNotFoundError:
            pass


@dataclass
class SpooledFile(StagedFile):
    """Object store: a local spool file, uploaded to the final key in one native call on commit."""

    fs: pafs.FileSystem
    spool: str
    final: str

    def size(self) -> int:
        return os.path.getsize(self.spool)

    def commit(self) -> None:
        try:
            # One C++ call: no Python code runs between the first byte sent and the upload's
            # completion, so a Dagster interrupt cannot complete a partial upload.
            pafs.copy_files(
                self.spool,
                self.final,
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=self.fs,
                use_threads=False,
            )
        finally:
            self.discard()

    def discard(self) -> None:
        try:
            os.unlink(self.spool)
        except FileNotFoundError:
            pass


class Lake:
    """A folder (local or object store) addressed by relative POSIX paths."""

    def __init__(self, root: str, environ: Mapping[str, str] | None = None) -> None:
        if root.startswith("s3://"):
            bucket_and_prefix = root[len("s3://") :].strip("/")
            self.fs = s3_filesystem(bucket_and_prefix.split("/", 1)[0], environ)
            base = bucket_and_prefix
        elif "://" in root:
            self.fs, base = pafs.FileSystem.from_uri(root)
        else:
            self.fs, base = pafs.LocalFileSystem(), os.path.abspath(root)
        self.root = root
        self._base = base.rstrip("/")

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def full_path(self, rel: str) -> str:
        return posixpath.join(self._base, rel) if rel else self._base

    def local_path(self, rel: str) -> str:
        """Only for consumers that need a real local file (SQLite); fails on object stores."""
        if not self.is_local:
            raise ValueError(f"{self.root} is not a local folder; {rel} has no local path")
        return self.full_path(rel)

    # -- reading -----------------------------------------------------------------------------

    def exists(self, rel: str) -> bool:
        """Whether a file exists. On an object store one HEAD request: `get_file_info` would also
        list the key as a prefix (one ListObjects call per miss) to find a "directory"."""
        if self.is_local:
            return self.fs.get_file_info(self.full_path(rel)).type != pafs.FileType.NotFound
        try:
            self.fs.open_input_file(self.full_path(rel)).close()
        except FileNotFoundError:
            return False
        return True

    def size(self, rel: str) -> int | None:
        """A file's size in bytes, None if it is missing (one HEAD request on an object store)."""
        if self.is_local:
            return self.fs.get_file_info(self.full_path(rel)).size
        try:
            with self.fs.open_input_file(self.full_path(rel)) as f:
                return f.size()
        except FileNotFoundError:
            return None

    def list_files(self, rel_dir: str, suffix: str = "", recursive: bool = False) -> list[LakeFile]:
        """Files under a folder (sorted by path), skipping in-flight temporary files.

        On an object store this is one ListObjectsV2 request per 1,000 keys under the folder's
        prefix (never the bucket): callers list only the folders of the partitions they touch."""
        selector = pafs.FileSelector(
            self.full_path(rel_dir), allow_not_found=True, recursive=recursive
        )
        out = []
        for info in self.fs.get_file_info(selector):
            if info.type != pafs.FileType.File or TMP_MARKER in info.base_name:
                continue
            if suffix and not info.base_name.endswith(suffix):
                continue
            rel = info.path[len(self._base) + 1 :]
            out.append(LakeFile(rel, info.size or 0))
        return sorted(out, key=lambda f: f.path)

    def list_dirs(self, rel_dir: str) -> list[str]:
        selector = pafs.FileSelector(self.full_path(rel_dir), allow_not_found=True)
        return sorted(
            info.base_name
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.Directory
        )

    def open_input(self, rel: str, compression: str | None = None) -> pa.NativeFile:
        """A readable stream; `compression="zstd"` decompresses on the fly."""
        # pyarrow would "detect" compression from the extension; be explicit instead.
        return self.fs.open_input_stream(self.full_path(rel), compression=compression)

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.full_path(rel), compression=None) as f:
            return f.read()

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    # -- writing -----------------------------------------------------------------------------

    @contextmanager
    def write_atomic(self, rel: str, compression: str | None = None) -> Iterator[pa.NativeFile]:
        """Yield a writable stream; the file appears under `rel` only if the block completes."""
        raw, staged = self.open_staged(rel)
        stream = pa.CompressedOutputStream(raw, compression) if compression else raw
        try:
            yield stream
            stream.close()
            if not raw.closed:
                raw.close()
        except BaseException:
            try:
                if not stream.closed:
                    stream.close()
                if not raw.closed:
                    raw.close()
            finally:
                staged.discard()
            raise
        try:
            staged.commit()
        except BaseException:
            staged.discard()
            raise

    def open_staged(self, rel: str) -> tuple[pa.NativeFile, StagedFile]:
        """A writable stream to a temporary file, for writers that close streams themselves.

        Call `staged.commit()` after the stream is closed to publish it under `rel`, or
        `staged.discard()` to drop it. `staged.size()` is the size it will have once published.
        """
        final = self.full_path(rel)
        if self.is_local:
            tmp = f"{final}{TMP_MARKER}{uuid.uuid4().hex}"
            self.fs.create_dir(posixpath.dirname(final), recursive=True)
            return self.fs.open_output_stream(tmp, compression=None), RenamedFile(
                self.fs, tmp, final
            )
        # An object store has no folders to create (pyarrow would PUT an empty "folder/" marker
        # object per level and write).
        fd, spool = tempfile.mkstemp(prefix=SPOOL_PREFIX, suffix=TMP_MARKER.rstrip("-"))
        os.close(fd)
        return pa.OSFile(spool, "wb"), SpooledFile(self.fs, spool, final)

    def write_bytes(self, rel: str, data: bytes) -> None:
        with self.write_atomic(rel) as f:
            f.write(data)

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, json.dumps(obj, sort_keys=True, indent=1).encode())

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self.full_path(rel))
        except FileNotFoundError:
            pass

    def move(self, rel: str, to_rel: str) -> None:
        """Move a file (rare: setting damaged files aside). On an object store a server-side copy
        then a delete."""
        if self.is_local:
            self.fs.create_dir(posixpath.dirname(self.full_path(to_rel)), recursive=True)
        self.fs.move(self.full_path(rel), self.full_path(to_rel))
