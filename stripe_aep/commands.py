"""`stripe-aep setup` and `stripe-aep doctor`: plain functions over the clients, printed for people."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from stripe_aep.aep.client import AepClient
from stripe_aep.aep.doctor import Check, doctor_aep
from stripe_aep.aep.settings import AepSettings
from stripe_aep.aep.setup import run_setup
from stripe_aep.catalog import DEFAULT_RESOURCES, EVENTS, event_type_passes
from stripe_aep.config import (
    RESOURCES_VARIABLE,
    ConfigError,
    StripeSettings,
    check_data_dir,
    check_tenant,
    data_dir_from_env,
    selected_resources,
    start_date_from_env,
)
from stripe_aep.stripe.client import (
    StripeClient,
    StripeError,
    StripePermissionError,
    list_passes,
)

#: doctor is a quick check: a couple of retries tell a blip from an outage without minutes of backoff
DOCTOR_RETRIES = 2


def setup_command(profile: bool = False) -> int:
    """Create (idempotently) the XDM field groups, schemas, identity namespace and datasets of the
    selected resources (`STRIPE_AEP_RESOURCES`)."""
    from stripe_aep.xdm import schema_registry_payloads

    resources = selected_resources()
    settings = AepSettings.from_env()
    tenant = check_tenant(settings.tenant_id)  # setup names things after the tenant: required here
    client = AepClient(settings)
    payloads = {r: schema_registry_payloads(r, tenant) for r in resources}
    datasets = run_setup(client, tenant=tenant, payloads=payloads, profile=profile)
    width = max(len(r) for r in datasets)
    print(f"AEP sandbox {settings.sandbox!r}, tenant _{tenant}: datasets")
    for resource, dataset_id in datasets.items():
        print(f"  {resource.ljust(width)}  {dataset_id}   (AEP_DATASET_{resource.upper()})")
    return 0


def stripe_checks(settings: StripeSettings, resources: Sequence[str]) -> list[Check]:
    """One cheap list call per resource of `resources` and one of the events (when they have any):
    proves the key works and has every read permission the selection needs.

    A failure other than a missing permission (a rejected key, an unreachable base) would fail every
    resource the same way, so the remaining ones are reported as skipped instead of asked again.
    """
    client = StripeClient(settings, max_retries=DOCTOR_RETRIES)
    checks = []
    try:
        # The events too: `stripe/events` needs Events: Read (rak_event_read) on a restricted key.
        readable = (*resources, *([EVENTS] if event_type_passes(resources) else []))
        for index, resource in enumerate(readable):
            try:
                client.list_page(resource, list_passes(resource, resources)[0])
                checks.append(Check(f"stripe {resource}", True, "readable"))
            except StripePermissionError as exc:
                checks.append(Check(f"stripe {resource}", False, str(exc)))
            except StripeError as exc:
                checks.append(Check(f"stripe {resource}", False, str(exc)))
                for skipped in readable[index + 1 :]:
                    checks.append(
                        Check(f"stripe {skipped}", False, "skipped", "fix the error above first")
                    )
                break
    finally:
        client.close()
    return checks


def settings_checks() -> list[Check]:
    """Settings that need no API: the resources, the start date and the data folder (created if
    missing)."""
    checks = []
    try:
        checks.append(Check(RESOURCES_VARIABLE, True, ", ".join(selected_resources())))
    except ConfigError as exc:
        checks.append(Check(RESOURCES_VARIABLE, False, str(exc)))
    try:
        checks.append(Check("STRIPE_START_DATE", True, start_date_from_env().isoformat()))
    except ConfigError as exc:
        checks.append(Check("STRIPE_START_DATE", False, str(exc)))
    try:
        checks.append(Check("data folder", True, f"{check_data_dir(data_dir_from_env())} writable"))
    except ConfigError as exc:
        checks.append(Check("data folder", False, str(exc)))
    return checks


def doctor_command() -> int:
    """Check both sides' credentials and permissions and say exactly what is missing."""
    checks: list[Check] = settings_checks()
    try:
        resources = selected_resources()
    except ConfigError:
        resources = DEFAULT_RESOURCES  # reported by settings_checks; check what the default needs
    try:
        checks += stripe_checks(StripeSettings.from_env(), resources)
    except ConfigError as exc:
        checks.append(Check("stripe settings", False, str(exc)))
    try:
        settings = AepSettings.from_env()
        checks += doctor_aep(
            AepClient(settings, max_retries=DOCTOR_RETRIES),
            tenant=settings.tenant_id,
            resources=resources,
            environ=os.environ,
        )
    except ConfigError as exc:
        checks.append(Check("aep settings", False, str(exc)))
    for check in checks:
        mark = "ok  " if check.ok else "FAIL"
        print(f"[{mark}] {check.name}: {check.detail}")
        if not check.ok and check.fix:
            print(f"       fix: {check.fix}")
    failed = [c for c in checks if not c.ok]
    print(f"\n{len(checks) - len(failed)} of {len(checks)} checks passed", file=sys.stderr)
    return 1 if failed else 0
