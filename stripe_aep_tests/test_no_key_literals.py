"""No tracked file holds a live-looking Stripe key literal (secret scanners flag them, and a real one
must never be committed): test and benchmark keys are built at run time, e.g. `"sk_live_" + "…"`."""

import re
import subprocess

from stripe_aep_tests.paths import REPO_ROOT

LIVE_KEY_LITERAL = re.compile(rb"\b(?:sk|rk)_live_[A-Za-z0-9]{8,}")


def test_no_tracked_file_holds_a_live_looking_stripe_key():
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    found = []
    for name in filter(None, files):
        path = REPO_ROOT / name.decode()
        if path.is_file():
            for match in LIVE_KEY_LITERAL.finditer(path.read_bytes()):
                found.append(f"{name.decode()}: {match.group()[:12].decode()}…")
    assert not found, found
