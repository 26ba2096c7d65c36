"""guise for Django: trust the gateway's signed identity headers.

Use it when guise checks passwords (`auth.mode: gateway`) and Django should
take the signed-in user from the gateway instead of its own login. In
settings.py:

    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "guise_django.GuiseIdentityMiddleware",   # after AuthenticationMiddleware
        ...,
    ]
    AUTHENTICATION_BACKENDS = ["guise_django.GuiseBackend"]
    GUISE_SIGNING_KEY = os.environ["GUISE_SIGNING_KEY"]   # the gateway's key
    # GUISE_HEADER_PREFIX = "x-guise-"                    # if you changed it

Every request whose identity headers do not verify gets 401, so Django can
safely be reachable without the gateway too; a request without identity
headers is anonymous. The user is created on first sight (RemoteUserBackend),
and `is_staff`/`is_superuser` follow the gateway's `x-guise-roles`.
See docs/django.md.
"""
import hashlib
import hmac
import time
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.backends import RemoteUserBackend
from django.contrib.auth.middleware import RemoteUserMiddleware
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse

MAX_SKEW = 30


def signed_path(request):
    """The path as guise sent it, which is what it signed.

    WSGI servers hand Django a decoded path. gunicorn keeps the raw target
    in RAW_URI, uWSGI and mod_wsgi in REQUEST_URI; without either (Django's
    runserver), the path is encoded back from `request.path` (Django has
    already decoded it as UTF-8): guise sends paths in a normal form
    (escapes of letters, digits and `-._~` decoded, the other escapes in
    upper case), which this reproduces for every path whose sub-delimiters
    (`!$&'()*+,;=:@`) were sent as themselves rather than percent-encoded.
    """
    raw = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    if raw:
        return raw.split("?", 1)[0]
    return quote(request.path, safe="/:@!$&'()*+,;=")


def verify(key, prefix, method, path, headers, now=None):
    """headers: {lower-case name: value}. Returns {suffix: value}, {} when
    anonymous; raises ValueError when the identity does not verify."""
    sig_name = prefix + "signature"
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
    if abs((int(time.time()) if now is None else now) - int(ts)) > MAX_SKEW:
        raise ValueError("signature too old or dated in the future")
    return {n[len(prefix):]: v for n, v in ident.items()}


def _identity_headers(request, prefix):
    """Headers with the prefix, as the gateway named them; WSGI turned
    `x-guise-user` into HTTP_X_GUISE_USER."""
    meta_prefix = "HTTP_" + prefix.upper().replace("-", "_")
    out = {}
    for k, v in request.META.items():
        if k.startswith(meta_prefix):
            out[k[5:].lower().replace("_", "-")] = v
    return out


class GuiseIdentityMiddleware(RemoteUserMiddleware):
    """Verify the signature, then log in the user `x-guise-user` names."""

    force_logout_if_no_header = True
    # The check runs in __call__; Django adapts async stacks around it.
    async_capable = False

    def __init__(self, get_response):
        super().__init__(get_response)
        key = getattr(settings, "GUISE_SIGNING_KEY", None)
        if not key:
            raise ImproperlyConfigured("set GUISE_SIGNING_KEY to the gateway's signing key")
        self.key = key.encode() if isinstance(key, str) else key
        self.prefix = getattr(settings, "GUISE_HEADER_PREFIX", "x-guise-").lower()
        self.header = "HTTP_" + (self.prefix + "user").upper().replace("-", "_")

    def __call__(self, request):
        try:
            who = verify(self.key, self.prefix, request.method, signed_path(request),
                         _identity_headers(request, self.prefix))
        except ValueError as e:
            return HttpResponse(f"identity refused: {e}\n", status=401, content_type="text/plain")
        request.guise = who
        return super().__call__(request)


class GuiseBackend(RemoteUserBackend):
    """Users named by the gateway; staff rights follow its roles."""

    def configure_user(self, request, user, created=True):
        roles = set((getattr(request, "guise", {}) or {}).get("roles", "").split(","))
        user.is_staff = bool(roles & {"admin", "super_admin"})
        user.is_superuser = "super_admin" in roles or "admin" in roles
        email = (getattr(request, "guise", {}) or {}).get("user-email")
        if email:
            user.email = email
        user.save()
        return user

    def authenticate(self, request, remote_user):
        user = super().authenticate(request, remote_user)
        # Roles can change at the gateway: follow them on every sign-in.
        if user is not None:
            self.configure_user(request, user, created=False)
        return user
