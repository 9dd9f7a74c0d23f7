"""The catalog (stripe_aep/catalog.py) is the one declaration of each Stripe resource: every part
that knows about resources must agree with it, and `STRIPE_AEP_RESOURCES` selects from it."""

import itertools
import re

import pytest

from stripe_aep.catalog import (
    DEFAULT_RESOURCES,
    EVENTS,
    MAX_EVENT_TYPES_PER_REQUEST,
    RESOURCE_NAMES,
    STRIPE_RESOURCES,
    XdmClass,
    by_object_name,
    deletion_types,
    event_type_passes,
    stripe_resource,
)
from stripe_aep.config import RESOURCES_VARIABLE, ConfigError, selected_resources
from stripe_aep.specs import stripe as stripe_specs
from stripe_aep_tests.conftest import AEP_SOURCE_RESOURCES, TEST_KEY
from stripe_aep_tests.paths import REPO_ROOT

#: Selections whose every resource the XDM layer of this branch maps (setup and assets need it).
MAPPED_SELECTIONS = [("charges", "customers"), ("refunds", "charges"), AEP_SOURCE_RESOURCES]


# -- the declarations ------------------------------------------------------------------------------


def test_names_object_names_and_id_prefixes_are_unique():
    assert len(set(RESOURCE_NAMES)) == len(RESOURCE_NAMES) == len(STRIPE_RESOURCES)
    assert len({r.object_name for r in STRIPE_RESOURCES}) == len(STRIPE_RESOURCES)
    prefixes = [r.id_prefix for r in STRIPE_RESOURCES]
    assert len(set(prefixes)) == len(prefixes)
    # No prefix starts another (an id would then match two resources).
    for a, b in itertools.permutations(prefixes, 2):
        assert not b.startswith(a), (a, b)
    assert all(re.fullmatch(r"[a-z]+_", p) for p in prefixes)
    for r in STRIPE_RESOURCES:
        assert stripe_resource(r.name) is r and by_object_name(r.object_name) is r
        assert r.list_path == f"/v1/{r.name}"
    assert by_object_name("payout") is None
    with pytest.raises(ValueError, match="expected one of charges"):
        stripe_resource("payouts")


def test_the_default_is_every_resource_aep_source_six_plus_disputes_and_invoices():
    assert DEFAULT_RESOURCES == RESOURCE_NAMES
    assert AEP_SOURCE_RESOURCES == (
        "charges",
        "subscriptions",
        "refunds",
        "balance_transactions",
        "customers",
        "prices",
    )
    assert set(RESOURCE_NAMES) - set(AEP_SOURCE_RESOURCES) == {"disputes", "invoices"}


@pytest.mark.parametrize("resource", STRIPE_RESOURCES, ids=lambda r: r.name)
def test_a_vendored_sample_object_exists_at_every_vendored_version(resource):
    for version in stripe_specs.vendored_versions():
        sample = stripe_specs.sample_object(resource.object_name, version)
        assert sample["object"] == resource.object_name, version
        assert sample["id"].startswith(resource.id_prefix), (version, sample["id"])
        assert isinstance(sample["created"], int), version


def _namespace(event_type: str) -> str:
    """`charge.dispute.created` → `charge.dispute`: the object an event type is named after."""
    return event_type.rsplit(".", 1)[0]


def test_every_event_type_belongs_to_its_object_namespace():
    namespaces = {}
    for r in STRIPE_RESOURCES:
        if not r.has_events:
            assert not (r.creation_types or r.deletion_types or r.subject_events), r.name
            continue
        # One namespace per resource, named after its object (`customer.subscription`).
        (namespace,) = {_namespace(t) for t in r.event_types}
        assert namespace.split(".")[-1] == r.object_name.split("_")[-1], (r.name, namespace)
        assert namespace not in namespaces, (r.name, namespaces.get(namespace))
        namespaces[namespace] = r.name
        assert len(set(r.event_types)) == len(r.event_types), r.name
        assert r.creation_types and set(r.creation_types) <= set(r.event_types), r.name
        assert set(r.deletion_types) <= set(r.event_types), r.name
        assert not set(r.creation_types) & set(r.deletion_types), r.name
        assert not any("*" in t for t in r.event_types)
        # A subject event is another resource's event, and names this object in a field.
        for event_type, field_name in r.subject_events.items():
            owner = namespaces.get(_namespace(event_type)) or next(
                o.name for o in STRIPE_RESOURCES if event_type in o.event_types
            )
            assert owner != r.name and event_type in stripe_resource(owner).event_types
            assert field_name == r.object_name, (r.name, event_type)
    # `customer.` is the customers' namespace and `customer.subscription.` the subscriptions'.
    assert namespaces["customer"] == "customers"
    assert namespaces["customer.subscription"] == "subscriptions"
    assert namespaces["charge.dispute"] == "disputes"
    assert deletion_types() == {t for r in STRIPE_RESOURCES for t in r.deletion_types}


def test_lookup_resources_name_catalog_resources():
    for r in STRIPE_RESOURCES:
        assert set(r.lookup_resources) <= set(RESOURCE_NAMES) - {r.name}, r.name


SELECTIONS = [
    DEFAULT_RESOURCES,
    AEP_SOURCE_RESOURCES,
    *[(name,) for name in RESOURCE_NAMES],
    ("charges", "disputes"),
    ("invoices", "customers"),
]


@pytest.mark.parametrize("selection", SELECTIONS, ids=lambda s: ",".join(s))
def test_event_type_passes_hold_20_at_most_and_ask_every_type_once(selection):
    passes = event_type_passes(selection)
    asked = [t for p in passes for t in p]
    assert all(0 < len(p) <= MAX_EVENT_TYPES_PER_REQUEST == 20 for p in passes)
    assert len(asked) == len(set(asked))
    wanted = {t for name in selection for t in stripe_resource(name).requested_event_types}
    assert set(asked) == wanted
    # A resource's types never split over two passes (those another one asks already aside).
    for name in selection:
        types = set(stripe_resource(name).requested_event_types) - {
            t
            for other in selection
            if other != name
            for t in stripe_resource(other).requested_event_types
        }
        assert sum(1 for p in passes if types & set(p)) <= 1, name


def test_aep_source_six_need_one_events_pass_and_all_eight_two():
    assert len(event_type_passes(AEP_SOURCE_RESOURCES)) == 1
    assert len(event_type_passes(DEFAULT_RESOURCES)) == 2
    assert event_type_passes(["balance_transactions"]) == ()


# -- the parts that derive from it -------------------------------------------------------------------


def test_the_xdm_mappings_agree_with_the_catalog():
    """Each mapping names its resource and Stripe object as the catalog does, and its class is the
    catalog's; the mapping is the `MAPPING` of the module the catalog names."""
    import importlib

    from stripe_aep.xdm.resources import mapping_for

    for name in RESOURCE_NAMES:
        declared, mapping = stripe_resource(name), mapping_for(name)
        module = importlib.import_module(declared.mapping_module)
        assert module.MAPPING.resource_fields == mapping.resource_fields, name
        assert declared.mapping_module == f"stripe_aep.xdm.mappings.{name}"
        assert mapping.resource == name
        assert mapping.stripe_object == declared.object_name
        assert mapping.is_event == (declared.xdm_class is XdmClass.EXPERIENCE_EVENT), name
        if declared.xdm_class is XdmClass.INDIVIDUAL_PROFILE:
            assert mapping.xdm_class == "https://ns.adobe.com/xdm/context/profile", name
        if declared.xdm_class is XdmClass.CUSTOM_RECORD:
            assert mapping.xdm_class == f"{{{{class:{name}}}}}", name


def test_the_client_lists_each_resource_with_its_declared_passes_and_permission():
    from stripe_aep.stripe.client import list_passes, permission_hint

    for r in STRIPE_RESOURCES:
        assert list_passes(r.name) == tuple(dict(p) for p in r.filter_passes)
        assert permission_hint(r.name) == f"{r.permission_label} ({r.permission})"
    # AEP's six: their 20 types fit one request, asked as `types[]`
    (six_types,) = event_type_passes(AEP_SOURCE_RESOURCES)
    assert len(six_types) == 20
    assert list_passes(EVENTS, AEP_SOURCE_RESOURCES) == ({"types[]": list(six_types)},)
    # all eight: more than 20 types, so one unfiltered pass instead of two `types[]` ones
    assert len(event_type_passes(DEFAULT_RESOURCES)) == 2
    assert list_passes(EVENTS, DEFAULT_RESOURCES) == ({},)


@pytest.mark.parametrize(
    "selection",
    [AEP_SOURCE_RESOURCES, DEFAULT_RESOURCES, ("customers",), ("charges", "disputes")],
    ids=["aep-six", "default-eight", "customers", "charges-disputes"],
)
def test_the_events_listing_keeps_exactly_the_selections_types_in_one_request(selection):
    from stripe_aep.stripe.client import events_listing

    passes, kept = events_listing(selection)
    assert len(passes) == 1
    asked = [t for p in event_type_passes(selection) for t in p]
    assert kept == tuple(asked) and len(set(kept)) == len(kept)
    assert set(kept) == {t for r in selection for t in stripe_resource(r).requested_event_types}
    if len(kept) <= MAX_EVENT_TYPES_PER_REQUEST:
        assert passes == ({"types[]": list(kept)},)
    else:
        assert passes == ({},)
    with pytest.raises(ValueError, match="no event types"):
        events_listing(["balance_transactions"])


def test_the_stripe_asset_layers_hold_every_catalog_resource():
    from stripe_aep.assets.aep import aep_assets
    from stripe_aep.assets.raw import raw_assets

    assert [a.key.path for a in raw_assets] == [["stripe", n] for n in RESOURCE_NAMES]
    assert [a.key.path for a in aep_assets] == [["aep", n] for n in RESOURCE_NAMES]
    for asset in raw_assets:
        name = asset.key.path[-1]
        assert asset.metadata_by_key[asset.key]["stripe_endpoint"] == f"/v1/{name}"


@pytest.mark.parametrize("selection", MAPPED_SELECTIONS, ids=lambda s: ",".join(s))
def test_the_code_location_assets_cover_exactly_the_selection(selection):
    from stripe_aep.definitions import selected_assets

    keys = sorted(a.key.to_user_string() for a in selected_assets(selection))
    assert keys == sorted(
        ["stripe/events"]
        + [f"{layer}/{r}" for layer in ("stripe", "xdm", "aep") for r in selection]
    )


@pytest.mark.parametrize("selection", [("customers", "prices"), ("balance_transactions",)])
def test_doctor_reads_exactly_the_selection_and_its_events(stripe_emulator, selection):
    from stripe_aep.commands import stripe_checks
    from stripe_aep.config import StripeSettings

    settings = StripeSettings.build(api_key=TEST_KEY, api_base=stripe_emulator.url)
    checks = stripe_checks(settings, selection)
    has_events = any(stripe_resource(r).has_events for r in selection)
    expected = [*selection, *([EVENTS] if has_events else [])]
    assert [c.name for c in checks] == [f"stripe {r}" for r in expected]
    assert all(c.ok for c in checks), [c.detail for c in checks]
    assert [r.path for r in stripe_emulator.log] == [f"/v1/{r}" for r in expected]


def test_setup_creates_the_datasets_of_exactly_the_selection(monkeypatch, capsys):
    from stripe_aep.aep.setup import dataset_env_var
    from stripe_aep.cli import main
    from stripe_aep.emulators.aep_api import AepEmulator
    from stripe_aep_tests.aep.conftest import env_for

    selection = ("refunds", "charges")
    with AepEmulator() as aep:
        for name, value in env_for(aep).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv(RESOURCES_VARIABLE, ",".join(selection))
        assert main(["setup"]) == 0
        out = capsys.readouterr().out
        assert len(aep.state.datasets) == 2
    printed = re.findall(r"\((AEP_DATASET_[A-Z_]+)\)", out)
    # catalog order, whatever the order of the setting
    assert printed == [dataset_env_var("charges"), dataset_env_var("refunds")]


def test_the_readme_configuration_documents_the_selection():
    readme = (REPO_ROOT / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith(f"| `{RESOURCES_VARIABLE}`")]
    for name in RESOURCE_NAMES:
        assert f"`{name}`" in row, name
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    assert RESOURCES_VARIABLE in operations


# -- STRIPE_AEP_RESOURCES --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "  "])
def test_unset_or_blank_selects_every_resource(value):
    environ = {} if value is None else {RESOURCES_VARIABLE: value}
    assert selected_resources(environ) == DEFAULT_RESOURCES == RESOURCE_NAMES


def test_a_selection_comes_back_in_catalog_order_with_spaces_allowed():
    environ = {RESOURCES_VARIABLE: " prices , charges,refunds "}
    assert selected_resources(environ) == ("charges", "refunds", "prices")
    six = ",".join(reversed(AEP_SOURCE_RESOURCES))
    assert selected_resources({RESOURCES_VARIABLE: six}) == AEP_SOURCE_RESOURCES


def test_selected_resources_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv(RESOURCES_VARIABLE, "customers")
    assert selected_resources() == ("customers",)
    monkeypatch.delenv(RESOURCES_VARIABLE)
    assert selected_resources() == DEFAULT_RESOURCES


@pytest.mark.parametrize(
    "value, problem, fix",
    [
        ("charges,payouts", "unknown Stripe resource 'payouts'", "Use names from: charges,"),
        ("Charges", "unknown Stripe resource 'Charges'", "Use names from: charges,"),
        ("charges,charges", "charges named more than once", "Name each resource once"),
        (",", "has an empty name", "Separate resource names by single commas"),
        ("charges,,customers", "has an empty name", f"e.g. {RESOURCES_VARIABLE}=charges,"),
        ("refunds", "refunds needs charges", f"Add charges to {RESOURCES_VARIABLE}, or remove"),
        ("disputes,customers", "disputes needs charges", "Add charges"),
        ("charges,cus\ttomers", "contains a tab", "Remove it"),
    ],
)
def test_a_bad_selection_names_the_variable_and_the_fix(value, problem, fix):
    with pytest.raises(ConfigError) as exc:
        selected_resources({RESOURCES_VARIABLE: value})
    message = str(exc.value)
    assert exc.value.variable == RESOURCES_VARIABLE
    assert message.startswith(f"{RESOURCES_VARIABLE}: ")
    assert problem in message and fix in message, message


def test_an_unknown_name_lists_every_valid_one():
    with pytest.raises(ConfigError) as exc:
        selected_resources({RESOURCES_VARIABLE: "payouts"})
    for name in RESOURCE_NAMES:
        assert name in str(exc.value)
