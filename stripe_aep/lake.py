"""The local lake: raw, XDM, quarantine and ledger files under `STRIPE_AEP_DATA_DIR`, through `pyarrow.fs`.

Why `pyarrow.fs` and not `open()`: the same code must run on a laptop (a local folder) and on Kubernetes
(`s3://…`, `gs://…`), so no module on the data path touches local paths directly. Every write is atomic:
data goes to a temporary name first and is renamed into place, so a crash leaves the whole file or
nothing, and state derived from file names (the `created` cursor) can never describe half a file.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

TMP_MARKER = ".tmp-"


@dataclass(frozen=True)
class LakeFile:
    path: str  # relative to the lake root, with "/" separators
    size: int


@dataclass
class StagedFile:
    fs: pafs.FileSystem
    tmp: str
    final: str

    def commit(self) -> None:
        self.fs.move(self.tmp, self.final)

    def discard(self) -> None:
        try:
            self.fs.delete_file(self.tmp)
        except FileNotFoundError:
            pass


class Lake:
    """A folder (local or object store) addressed by relative POSIX paths."""

    def __init__(self, root: str) -> None:
        if "://" in root:
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
        return self.fs.get_file_info(self.full_path(rel)).type != pafs.FileType.NotFound

    def list_files(self, rel_dir: str, suffix: str = "", recursive: bool = False) -> list[LakeFile]:
        """Files under a folder (sorted by path), skipping in-flight temporary files."""
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
        final = self.full_path(rel)
        tmp = f"{final}{TMP_MARKER}{uuid.uuid4().hex}"
        self.fs.create_dir(posixpath.dirname(final), recursive=True)
        raw = self.fs.open_output_stream(tmp, compression=None)
        stream = pa.CompressedOutputStream(raw, compression) if compression else raw
        try:
            yield stream
            stream.close()
            if compression:
                raw.close()
            self.fs.move(tmp, final)
        except BaseException:
            try:
                if not stream.closed:
                    stream.close()
                if compression and not raw.closed:
                    raw.close()
            finally:
                self.fs.delete_file(tmp)
            raise

    def open_staged(self, rel: str) -> tuple[pa.NativeFile, StagedFile]:
        """A writable stream to a temporary name, for writers that close streams themselves.

        Call `staged.commit()` after the stream is closed to move it into place, or
        `staged.discard()` to drop it.
        """
        final = self.full_path(rel)
        tmp = f"{final}{TMP_MARKER}{uuid.uuid4().hex}"
        self.fs.create_dir(posixpath.dirname(final), recursive=True)
        return self.fs.open_output_stream(tmp, compression=None), StagedFile(self.fs, tmp, final)

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

    def cleanup_temporaries(self, rel_dir: str) -> int:
        """Remove temporaries left by a crashed writer (only safe when no writer is active)."""
        selector = pafs.FileSelector(self.full_path(rel_dir), allow_not_found=True, recursive=True)
        count = 0
        for info in self.fs.get_file_info(selector):
            if info.type == pafs.FileType.File and TMP_MARKER in info.base_name:
                self.fs.delete_file(info.path)
                count += 1
        return count
