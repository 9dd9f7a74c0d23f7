"""`python -m stripe_aep.aep.recover_ledger <path>`: move a damaged delivery ledger aside.

Why a command and not an automatic fix: a ledger that cannot be read may still be the only record of
something (a batch created but not yet tagged in AEP by an older version, say), so the run that finds
it stops and names this command instead of deleting anything. Moving it aside keeps the file (and its
`-wal`/`-shm` files) renamed for inspection; the next delivery starts a new ledger and rebuilds what it
needs from the batches AEP's Catalog holds for the dataset, so nothing already delivered is sent again.
Its own module (not `ledger.py`) so `python -m` does not import the ledger module twice.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from stripe_aep.aep.ledger import set_aside


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print(
            "usage: python -m stripe_aep.aep.recover_ledger <path to aep_batches.sqlite>",
            file=sys.stderr,
        )
        return 2
    path = Path(args[0])
    if not path.exists():
        print(f"{path} does not exist: nothing to move (the next run starts a new ledger)")
        return 0
    if path.is_dir():
        print(f"{path} is a folder, not the ledger file (aep_batches.sqlite)", file=sys.stderr)
        return 2
    for moved in set_aside(path):
        print(f"moved to {moved}")
    print(
        "The next delivery run starts a new ledger and rebuilds it from AEP's Catalog; "
        "nothing already delivered is sent again."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
