"""XDM mapping of Stripe objects: declarations, schemas, Schema Registry payloads, conversion.

Plain Python (no Dagster): the XDM asset is a thin layer over `convert_jsonl`, and the
`stripe-aep schemas export` command calls `export_schemas`.
"""

from stripe_aep.xdm.convert import ConversionResult, PartInfo, convert_jsonl
from stripe_aep.xdm.docs import render_mapping_docs, write_mapping_docs
from stripe_aep.xdm.money import (
    STRIPE_CURRENCIES,
    currency_exponent,
    major_decimal,
    major_text,
)
from stripe_aep.xdm.registry import export_schemas, schema_registry_payloads
from stripe_aep.xdm.resources import ResourceMapping, mapping_for
from stripe_aep.xdm.schemas import column_schema, validate_tenant, xdm_schema_for
from stripe_aep.xdm.standard import CUSTOMER_NAMESPACE, identity_namespace_payload

__all__ = [
    "CUSTOMER_NAMESPACE",
    "STRIPE_CURRENCIES",
    "ConversionResult",
    "PartInfo",
    "ResourceMapping",
    "column_schema",
    "convert_jsonl",
    "currency_exponent",
    "export_schemas",
    "identity_namespace_payload",
    "major_decimal",
    "major_text",
    "mapping_for",
    "render_mapping_docs",
    "schema_registry_payloads",
    "validate_tenant",
    "write_mapping_docs",
    "xdm_schema_for",
]
