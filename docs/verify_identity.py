"""Verify guise identity headers in Python (see docs/identity-headers.md).

Run `python3 docs/verify_identity.py` to check it against the test vector
that the Rust test `identity::tests::canonical_string_of_the_test_vector_is_
exactly_the_documented_one` pins.
"""
import hashlib
import hmac
import time


def verify(key, prefix, method, path, headers, now=None, max_skew=30):
    """headers: {lower-case name: value}, each header once; path without the
    query. Returns {suffix: value} ({} if anonymous); raises ValueError."""
    prefix, sig_name = prefix.lower(), prefix.lower() + "signature"
    ident = {n: v for n, v in headers.items() if n.startswith(prefix) and n != sig_name}
    sig = headers.get(sig_name)
    if sig is None:
        if ident:
            raise ValueError("identity headers without a signature")
        return {}
    t, _, v1 = sig.partition(",")
    ts = t[2:]
    if not (t.startswith("t=") and ts.isascii() and ts.isdigit() and v1.startswith("v1=") and len(v1) == 67):
        raise ValueError("malformed signature header")
    lines = "".join(f"{n}:{v}\n" for n, v in sorted(ident.items()))
    canonical = f"guise-identity-v1\n{int(ts)}\n{method}\n{path}\n{lines}"
    expected = hmac.new(key, canonical.encode("ascii"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, v1[3:].lower()):
        raise ValueError("signature does not match")
    if abs((int(time.time()) if now is None else now) - int(ts)) > max_skew:
        raise ValueError("signature too old or dated in the future")
    return {n[len(prefix):]: v for n, v in ident.items()}


if __name__ == "__main__":
    KEY = b"guise-test-vector-key-0123456789"
    HEADERS = {
        "x-guise-user": "u-1001",
        "x-guise-user-email": "ada@example.com",
        "x-guise-roles": "admin,user",
        "x-guise-session": "3f2a9c1e0b7d4a65",
        "x-guise-impersonator": "u-0001",
        "x-guise-signature": "t=1700000000,v1=db80afd6dc3f4cebe96101f18b6df39fed26911b6445fb94bcaec60fcfe8549e",
        "accept": "text/html",
    }
    NOW = 1700000000
    who = verify(KEY, "x-guise-", "GET", "/companies/42", HEADERS, now=NOW)
    assert who["user"] == "u-1001" and who["impersonator"] == "u-0001", who
    assert verify(KEY, "x-guise-", "GET", "/", {"accept": "*/*"}, now=NOW) == {}
    refused = [
        ("tampered value", "GET", "/companies/42", {**HEADERS, "x-guise-user": "u-0001"}, NOW),
        ("other method", "POST", "/companies/42", HEADERS, NOW),
        ("other path", "GET", "/companies/43", HEADERS, NOW),
        ("extra header", "GET", "/companies/42", {**HEADERS, "x-guise-partner": "p-1"}, NOW),
        ("stale", "GET", "/companies/42", HEADERS, NOW + 31),
        ("unsigned", "GET", "/", {"x-guise-user": "admin"}, NOW),
    ]
    for what, method, path, headers, now in refused:
        try:
            verify(KEY, "x-guise-", method, path, headers, now=now)
        except ValueError:
            continue
        raise AssertionError(f"{what} was accepted")
    print("test vector verified; tampered, stale and unsigned requests refused")
