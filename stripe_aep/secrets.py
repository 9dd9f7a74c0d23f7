"""Masking secrets out of text, and re-raising transport errors without them: one helper for both clients.

Why: `requests`, `urllib3` and `http.client` put whatever they were given into their exceptions. A
Stripe key with a stray newline makes `requests` raise `InvalidHeader` carrying the whole
`Authorization` value; a proxy or URL error carries the URL; a JSON error carries the body it could
not parse. Dagster prints such an exception — and every exception chained to it — into the event log,
the compute logs and the terminal. So the two clients never let a transport exception out: they call
`transport_error` at the point where they talk to the network, and raise their own error type with a
message from which every known secret is masked, `from None` so the original (with the secret) is not
chained either.

Masking covers the forms a secret takes on its way into a request: raw, `repr`/JSON-escaped, URL-encoded
(form bodies, query strings) and base64 (HTTP Basic auth `user:secret`, at any alignment inside a longer
base64 string). Validation (`stripe_aep.config.check_text`) already refuses whitespace and control
characters, so this is the second line of defence, not the only one.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

#: Shortest secret masked in its encoded forms; shorter base64 fragments would mask ordinary words.
_MIN_ENCODED_LEN = 6


def _base64_cores(secret: bytes) -> set[str]:
    """The characters of base64(x + secret + y) that depend only on `secret`, for each of the three
    alignments `len(x) % 3`: they appear whatever surrounds the secret (`user:secret` in Basic auth)."""
    cores: set[str] = set()
    n = len(secret)
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * pad + secret + b"\0\0").decode("ascii")
            first = -(
                -8 * pad // 6
            )  # first 6-bit group starting at or after the secret's first bit
            last = (8 * (pad + n)) // 6  # groups ending at or before its last bit
            core = text[first:last]
            if len(core) >= _MIN_ENCODED_LEN:
                cores.add(core)
    return cores


def secret_forms(secret: str) -> set[str]:
    """Every string under which `secret` may appear in a message, longest first when sorted by caller."""
    if not secret:
        return set()
    forms = {secret}
    stripped = secret.strip()
    if stripped and stripped != secret:
        forms.add(stripped)  # `repr` of a header "Bearer sk_…\n" shows the key, then "\n"
    typed = re.fullmatch(r"[a-z]{2,3}_(?:test|live)_(.{12,})", stripped, re.DOTALL)
    if typed:
        forms.add(typed.group(1))  # a Stripe key's body is the secret part, even without sk_test_
    for value in list(forms):
        forms.add(repr(value)[1:-1])
        forms.add(json.dumps(value)[1:-1])
        if len(value) >= _MIN_ENCODED_LEN:
            forms.add(quote(value, safe=""))
            forms.add(quote_plus(value, safe=""))
            forms |= _base64_cores(value.encode("utf-8"))
    return {f for f in forms if f}


class SecretMasker:
    """Holds the secrets of one client (keys, client secrets, access tokens seen so far) and masks them.

    `hint` turns a secret into what is shown instead (e.g. `sk_test_…1234`); never the secret itself.
    Thread-safe: tokens are added while other threads mask.
    """

    def __init__(
        self, secrets: Iterable[str] = (), *, hint: Callable[[str], str] | None = None
    ) -> None:
        self._hint = hint or (lambda _secret: "***")
        self._lock = threading.Lock()
        self._replacements: list[tuple[str, str]] = []
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Mask `secret` from now on (every one is kept: a client sees about one token a day)."""
        if not secret:
            return
        with self._lock:
            if secret in self._secrets:
                return
            self._secrets.append(secret)
            pairs = []
            for known in self._secrets:
                shown = self._hint(known)
                pairs += [(form, shown) for form in secret_forms(known)]
            # longest first, so a form that contains another is replaced whole
            self._replacements = sorted(set(pairs), key=lambda p: -len(p[0]))

    def mask(self, text: str | None) -> str:
        if not text:
            return text or ""
        for form, shown in self._replacements:
            if form in text:
                text = text.replace(form, shown)
        return text

    def contains_secret(self, text: str) -> bool:
        return any(form in text for form, _ in self._replacements)


def describe_exception(exc: BaseException, masker: SecretMasker) -> str:
    """`TypeName: message` of a transport exception, with every known secret masked.

    The whole chain is described (a `requests` error often wraps the `urllib3` one that has the
    detail), since the chain itself will not be raised.
    """
    parts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(parts) < 4:
        seen.add(id(current))
        text = masker.mask(str(current))
        if len(text) > 300:
            text = text[:300] + "…"
        parts.append(f"{type(current).__name__}: {text}" if text else type(current).__name__)
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)
