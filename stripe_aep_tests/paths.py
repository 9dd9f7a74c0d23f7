"""Where the vendored specifications live (the repository's `specs/` folder)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SPECS_DIR = REPO_ROOT / "specs"
AEP_SPECS = SPECS_DIR / "aep"
STRIPE_SPECS = SPECS_DIR / "stripe"
