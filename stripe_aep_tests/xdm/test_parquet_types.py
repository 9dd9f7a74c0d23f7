"""The Parquet files use only the physical/logical types AEP documents (read back from metadata)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from stripe_aep.catalog import RESOURCE_NAMES as RESOURCES
from stripe_aep.xdm import xdm_schema_for
from stripe_aep_tests.xdm.conftest import TENANT, jsonl, sample, samples

ALLOWED = {
    ("INT64", "None"),
    ("DOUBLE", "None"),
    ("BOOLEAN", "None"),
    ("BYTE_ARRAY", "String"),
    (
        "INT64",
        "Timestamp(isAdjustedToUTC=true, timeUnit=milliseconds, is_from_converted_type=false, force_set_converted_type=false)",
    ),
}


@pytest.mark.parametrize("resource", RESOURCES)
def test_parquet_physical_and_logical_types(convert, resource):
    objects = samples(resource)
    run = convert(jsonl(objects), resource)
    meta = pq.ParquetFile(run.paths[0]).metadata
    schema = meta.schema
    seen_timestamp = False
    for i in range(len(schema)):
        col = schema.column(i)
        physical, logical = col.physical_type, str(col.logical_type)
        assert physical not in ("INT96", "FLOAT", "FIXED_LEN_BYTE_ARRAY"), col.path
        assert "Decimal" not in logical, col.path
        if physical == "BYTE_ARRAY":
            assert logical == "String", f"unannotated binary at {col.path}"
        if physical == "INT64" and logical != "None":
            assert logical.startswith("Timestamp(isAdjustedToUTC=true, timeUnit=milliseconds")
            assert col.converted_type == "TIMESTAMP_MILLIS"
            seen_timestamp = True
        assert (physical, logical) in ALLOWED, (col.path, physical, logical)
    assert seen_timestamp
    assert meta.num_rows == len(objects)
    # the file schema is the XDM schema
    assert pq.read_schema(run.paths[0]).equals(xdm_schema_for(resource, TENANT))


def test_maps_have_string_keys_and_lists_use_list_annotation(convert):
    run = convert(jsonl([sample("charges")]), "charges")
    arrow_schema = pq.read_schema(run.paths[0])
    meta = arrow_schema.field(f"_{TENANT}").type.field("charge").type.field("metadata").type
    assert str(meta.key_type) == "string" and str(meta.item_type) == "string"
    text = str(pq.ParquetFile(run.paths[0]).schema)
    assert "(Map)" in text and "(List)" in text
    for i in range(len(pq.ParquetFile(run.paths[0]).schema)):
        col = pq.ParquetFile(run.paths[0]).schema.column(i)
        if col.path.endswith("metadata.key_value.key"):
            assert (col.physical_type, str(col.logical_type)) == ("BYTE_ARRAY", "String")
            assert col.max_definition_level >= 1
