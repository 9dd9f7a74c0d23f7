"""XDM mapping of Stripe objects: declarations, schemas, Schema Registry payloads, conversion.

Plain Python (no Dagster): the XDM asset is a thin layer over `convert_jsonl`, and the
`stripe-aep schemas export` command calls `export_schemas`.

The names below are imported on first use: the conversion needs pandas and pyarrow, while some
importers only want the small modules (the AEP setup and emulator read `stripe_aep.xdm.standard`
for Adobe's class URIs and the identity namespace) and should not pay for the rest.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ConversionResult": "stripe_aep.xdm.convert",
    "PartInfo": "stripe_aep.xdm.convert",
    "convert_jsonl": "stripe_aep.xdm.convert",
    "render_mapping_docs": "stripe_aep.xdm.docs",
    "write_mapping_docs": "stripe_aep.xdm.docs",
    "STRIPE_CURRENCIES": "stripe_aep.xdm.money",
    "currency_exponent": "stripe_aep.xdm.money",
    "major_decimal": "stripe_aep.xdm.money",
    "major_text": "stripe_aep.xdm.money",
    "export_schemas": "stripe_aep.xdm.registry",
    "schema_registry_payloads": "stripe_aep.xdm.registry",
    "ResourceMapping": "stripe_aep.xdm.resources",
    "mapping_for": "stripe_aep.xdm.resources",
    "column_schema": "stripe_aep.xdm.schemas",
    "validate_tenant": "stripe_aep.xdm.schemas",
    "xdm_schema_for": "stripe_aep.xdm.schemas",
    "CUSTOMER_NAMESPACE": "stripe_aep.xdm.standard",
    "identity_namespace_payload": "stripe_aep.xdm.standard",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stripe_aep.xdm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
