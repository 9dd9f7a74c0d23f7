"""The `stripe-aep` command: emulators, the end-to-end demo, schema export, AEP setup and doctor.

Heavy imports happen inside each command so `stripe-aep --help` stays instant.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path


def _cmd_emulate(args: argparse.Namespace) -> int:
    from stripe_aep.emulators._server import BackgroundServer
    from stripe_aep.emulators.stripe_account import StripeAccount, settle_heap
    from stripe_aep.emulators.stripe_api import app_options, create_app
    from stripe_aep.emulators.stripe_events import event_versions_option

    try:
        options = app_options(args, seed=args.seed)
        versions = event_versions_option(args)
        account = StripeAccount(
            seed=args.seed,
            days=args.days,
            charges_per_day=args.charges_per_day,
            live=args.live,
            event_api_versions=versions,
        )
    except ValueError as error:
        print(f"emulate: {error}", file=sys.stderr)
        return 2
    settle_heap()
    app = create_app(account, **options)
    servers = [("Stripe", BackgroundServer(app, port=args.stripe_port).start())]
    if not args.no_aep:
        from stripe_aep.emulators.aep_api import create_app as create_aep_app

        servers.append(("AEP", BackgroundServer(create_aep_app(), port=args.aep_port).start()))
    for name, server in servers:
        print(f"{name} emulator listening on {server.url}", flush=True)
    print(
        "Point the pipeline at it: STRIPE_API_BASE=<Stripe url> STRIPE_API_KEY="
        + (("sk_live_" + "emulator") if options["livemode"] else "sk_test_emulator")
        + ("  AEP_IMS_URL=AEP_PLATFORM_URL=<AEP url>" if len(servers) > 1 else ""),
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    for _, server in servers:
        server.stop()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from stripe_aep.config import check_data_dir
    from stripe_aep.demo import run_demo

    check_data_dir(args.data_dir, "--data-dir")

    return run_demo(days=args.days, charges_per_day=args.charges_per_day, data_dir=args.data_dir)


def _cmd_schemas_export(args: argparse.Namespace) -> int:
    from stripe_aep.xdm import export_schemas

    paths = export_schemas(args.tenant, Path(args.out))
    for path in paths:
        print(path)
    return 0


def _cmd_setup(args: argparse.Namespace) -> int:
    from stripe_aep.commands import setup_command

    return setup_command(profile=args.profile)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from stripe_aep.commands import doctor_command

    return doctor_command()


def _cmd_ledger_recover(args: argparse.Namespace) -> int:
    from stripe_aep.aep.ledger import LEDGER_RELATIVE_PATH
    from stripe_aep.aep.recover_ledger import main as recover
    from stripe_aep.config import data_dir_from_env

    path = args.path
    if not path:
        from stripe_aep.config import ledger_url_from_env

        target = ledger_url_from_env()
        if target is not None and target.is_postgres:
            print(
                f"STRIPE_AEP_LEDGER_URL names a PostgreSQL ledger ({target.shown}); this command "
                "moves an SQLite ledger file aside. For PostgreSQL, rename the ledger tables or "
                "point the URL at a new database (docs/operations.md)",
                file=sys.stderr,
            )
            return 2
        path = target.path if target else os.path.join(data_dir_from_env(), LEDGER_RELATIVE_PATH)
    return recover([path])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stripe-aep", description="Stripe → Adobe Experience Platform, as XDM, exactly once."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    emulate = sub.add_parser("emulate", help="run the local Stripe (and AEP) emulators")
    emulate.add_argument("--stripe-port", type=int, default=12111)
    emulate.add_argument("--aep-port", type=int, default=12112)
    emulate.add_argument("--seed", type=int, default=7)
    emulate.add_argument("--days", type=int, default=7, help="days of history, today included")
    emulate.add_argument("--charges-per-day", type=int, default=200)
    emulate.add_argument("--live", action="store_true", help="new objects keep appearing")
    from stripe_aep.emulators.stripe_limits import add_limit_arguments

    add_limit_arguments(emulate)
    from stripe_aep.emulators.stripe_events import add_event_version_argument

    add_event_version_argument(emulate)
    emulate.add_argument("--no-aep", action="store_true", help="only the Stripe emulator")
    emulate.set_defaults(func=_cmd_emulate)

    demo = sub.add_parser("demo", help="run the pipeline end to end on the local emulators")
    demo.add_argument("--days", type=int, default=3)
    demo.add_argument("--charges-per-day", type=int, default=300)
    demo.add_argument("--data-dir", default=os.path.join("data", "demo"))
    demo.set_defaults(func=_cmd_demo)

    schemas = sub.add_parser("schemas", help="XDM schema payloads")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", required=True)
    export = schemas_sub.add_parser("export", help="write Schema Registry payloads per resource")
    export.add_argument("--tenant", required=True, help="AEP tenant id, without the underscore")
    export.add_argument("--out", required=True, help="output folder")
    export.set_defaults(func=_cmd_schemas_export)

    setup = sub.add_parser("setup", help="create field groups, schemas and datasets in AEP")
    setup.add_argument("--profile", action="store_true", help="enable datasets for Profile")
    setup.set_defaults(func=_cmd_setup)

    doctor = sub.add_parser("doctor", help="check Stripe and AEP credentials and permissions")
    doctor.set_defaults(func=_cmd_doctor)

    ledger = sub.add_parser("ledger", help="the delivery ledger")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    recover = ledger_sub.add_parser(
        "recover",
        help="move an unreadable ledger aside; the next delivery rebuilds it from AEP's Catalog",
    )
    recover.add_argument(
        "path",
        nargs="?",
        help="the ledger file (default: $STRIPE_AEP_DATA_DIR/ledger/aep_batches.sqlite)",
    )
    recover.set_defaults(func=_cmd_ledger_recover)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command. A bad setting exits 2, a failed Stripe or AEP call 1, each with one line that
    names the cause and the fix (the clients have already masked every secret out of it)."""
    from stripe_aep.aep.errors import AepError
    from stripe_aep.config import ConfigError
    from stripe_aep.stripe.client import StripeError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except (StripeError, AepError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
