"""One mapping module per catalog resource, bound to its catalog stanza by `mapping_for`."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from stripe_aep.catalog import STRIPE_RESOURCES, XdmClass
from stripe_aep.xdm import standard
from stripe_aep.xdm.resources import ResourceMapping, mapping_for


@pytest.mark.parametrize("stanza", STRIPE_RESOURCES, ids=lambda r: r.name)
def test_every_catalog_resource_has_a_mapping_that_takes_its_facts_from_the_catalog(stanza):
    mapping = mapping_for(stanza.name)
    assert mapping is mapping_for(stanza.name)  # loaded once
    assert (mapping.resource, mapping.stripe_object) == (stanza.name, stanza.object_name)
    assert mapping.is_event == (stanza.xdm_class is XdmClass.EXPERIENCE_EVENT)
    expected_class = {
        XdmClass.EXPERIENCE_EVENT: standard.EXPERIENCE_EVENT,
        XdmClass.INDIVIDUAL_PROFILE: standard.INDIVIDUAL_PROFILE,
        XdmClass.CUSTOM_RECORD: "{{class:" + stanza.name + "}}",
    }[stanza.xdm_class]
    assert mapping.xdm_class == expected_class
    assert mapping.behaviour == (
        standard.TIME_SERIES_BEHAVIOR if mapping.is_event else standard.RECORD_BEHAVIOR
    )
    module = importlib.import_module(stanza.mapping_module)
    # The reasoning is the module docstring, one paragraph after its title line.
    assert mapping.rationale == module.__doc__
    assert len(mapping.why) > 200 and "\n" not in mapping.why
    assert module.__doc__.splitlines()[0] not in mapping.why


def test_an_unbound_mapping_says_how_to_get_a_bound_one():
    declared = importlib.import_module("stripe_aep.xdm.mappings.charges").MAPPING
    assert isinstance(declared, ResourceMapping) and declared.catalog is None
    with pytest.raises(ValueError, match=r"mapping_for\(<resource name>\)"):
        _ = declared.resource


def test_unknown_resources_are_named_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown Stripe resource 'payouts'.*disputes"):
        mapping_for("payouts")


def test_a_custom_class_title_must_match_the_catalog_class(monkeypatch):
    module = importlib.import_module("stripe_aep.xdm.mappings.invoices")
    monkeypatch.setattr(
        module, "MAPPING", dataclasses.replace(module.MAPPING, custom_class_title="Stripe Invoice")
    )
    mapping_for.cache_clear()
    try:
        with pytest.raises(ValueError, match="custom_class_title.*EXPERIENCE_EVENT"):
            mapping_for("invoices")
    finally:
        monkeypatch.undo()
        mapping_for.cache_clear()
