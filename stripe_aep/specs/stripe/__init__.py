"""Stripe API versions and the object shapes the project has vendored for them.

Why: Stripe renders every object at the request's `Stripe-Version`, and fields come and go between
versions (a refund has `customer` only since 2026-07-29.dahlia). The emulator must render objects
as the requested version does, reject versions Stripe does not know, and the pinned default
version must be one whose shapes are vendored and checked against the XDM mapping. This module is
the one place that knows which versions exist (`api_versions.json`, from Stripe's OpenAPI spec via
stripe-python) and which fields each vendored version returns by default (`objects-<version>.json`,
Stripe's `fixtures3.json` at that version). Sources and licences: `SOURCE`, `LICENSE*`.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

_HERE = Path(__file__).parent
_OBJECTS_FILE = re.compile(r"objects-(\d{4}-\d{2}-\d{2}\.[a-z]+)\.json")


@functools.cache
def api_versions() -> tuple[str, ...]:
    """Every Stripe API version, oldest first."""
    versions = json.loads((_HERE / "api_versions.json").read_text())["versions"]
    return tuple(sorted(versions))


def is_api_version(version: str) -> bool:
    """True if Stripe knows this version (what Stripe accepts in `Stripe-Version`)."""
    return version in _positions()


@functools.cache
def _positions() -> dict[str, int]:
    return {version: i for i, version in enumerate(api_versions())}


def version_key(version: str) -> int:
    """Sort key of a known version (ValueError for an unknown one)."""
    try:
        return _positions()[version]
    except KeyError:
        raise ValueError(f"unknown Stripe API version {version!r}") from None


@functools.cache
def vendored_versions() -> tuple[str, ...]:
    """Versions whose object shapes are vendored, oldest first."""
    found = [m.group(1) for p in _HERE.iterdir() if (m := _OBJECTS_FILE.fullmatch(p.name))]
    return tuple(sorted(found, key=version_key))


def newest_vendored_version() -> str:
    return vendored_versions()[-1]


@functools.cache
def _objects(version: str) -> dict[str, Any]:
    document = json.loads((_HERE / f"objects-{version}.json").read_text())
    if document["api_version"] != version:  # pragma: no cover - a vendoring mistake
        raise ValueError(f"objects-{version}.json declares {document['api_version']}")
    return document["objects"]


def sample_object(object_name: str, version: str) -> dict[str, Any]:
    """Stripe's sample `object_name` (e.g. "refund") at a vendored version: a fresh copy."""
    if version not in vendored_versions():
        raise ValueError(
            f"no vendored shapes for Stripe API version {version!r}; vendored: "
            f"{', '.join(vendored_versions())}"
        )
    return json.loads(json.dumps(_objects(version)[object_name]))


def shape_version(version: str) -> str:
    """The vendored version whose shapes describe `version`: the newest vendored one not newer
    than it (the oldest vendored one for versions before every vendored one)."""
    key = version_key(version)
    if key > version_key(newest_vendored_version()):
        raise ValueError(
            f"Stripe API version {version} is newer than every vendored shape "
            f"(newest: {newest_vendored_version()})"
        )
    candidates = [v for v in vendored_versions() if version_key(v) <= key]
    return candidates[-1] if candidates else vendored_versions()[0]


@functools.cache
def fields_newer_than(object_name: str, version: str) -> frozenset[str]:
    """Top-level fields of `object_name` that the newest vendored version returns but `version`
    does not: they arrived after `version` (e.g. refund `customer` for 2026-06-24.dahlia)."""
    newest = _objects(newest_vendored_version())[object_name]
    shown = _objects(shape_version(version))[object_name]
    return frozenset(set(newest) - set(shown))
