"""The status callback endpoint Clickatell pushes message statuses to.

Authenticated with HTTP Basic credentials set in the Clickatell account: the
``CALLBACK_USERNAME`` / ``CALLBACK_PASSWORD`` pair and the pairs in
``CALLBACK_BASIC_AUTH`` (several, so they can be rotated).  Every accepted pair
is compared, always, in constant time, so the answer's timing reveals neither
which pair matched nor how many there are.  CSRF-exempt because Clickatell
cannot send a token, and quick: one lookup and one conditional update.  Bad
requests get a 4xx with a short reason and change nothing; unknown messages
are kept for later matching and answered 200, or Clickatell would retry for
days.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Mapping, Sequence

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_http_methods

from .conf import MAX_CALLBACK_CREDENTIALS, ClickatellSettings, SettingError, app_settings
from .conf.errors import describe
from .exceptions import InvalidCallback
from .services.callback_accounts import AmbiguousApiId, route_callback
from .services.callbacks import (
    ForeignCallback,
    callback_account,
    legacy_json_fields,
    receive_callback,
    receive_json_callback,
)

logger = logging.getLogger("django_clickatell.callbacks")

#: Pairs compared on every request, however many are set: the list's maximum plus the
#: CALLBACK_USERNAME/CALLBACK_PASSWORD pair.  Unused slots compare against filler.
COMPARED_PAIRS = MAX_CALLBACK_CREDENTIALS + 1
#: Keys the digests of this process: every value compared has the same length, and the
#: digests mean nothing outside the process.
_DIGEST_KEY = secrets.token_bytes(32)

Digest = bytes
#: (user digest, password digest, 1 for a real pair or 0 for filler)
Candidate = tuple[Digest, Digest, int]


def _text(status: int, reason: str) -> HttpResponse:
    return HttpResponse(reason, status=status, content_type="text/plain; charset=utf-8")


def _unauthorized() -> HttpResponse:
    response = _text(401, "Unauthorized")
    response["WWW-Authenticate"] = 'Basic realm="clickatell-callback", charset="UTF-8"'
    return response


def _digest(text: str) -> Digest:
    return hmac.new(_DIGEST_KEY, text.encode(), hashlib.sha256).digest()


def _candidates(config: ClickatellSettings = app_settings) -> list[Candidate]:
    """The accepted pairs as digests, padded with filler to :data:`COMPARED_PAIRS`."""
    real = [
        (_digest(user), _digest(password.reveal()), 1)
        for user, password in config.callback_credentials
    ]
    # Filler is digested too, so a short list costs the same work as a full one.
    filler = [(_digest(""), _digest(""), 0) for _ in range(COMPARED_PAIRS - len(real))]
    return real + filler


def _presented(request: HttpRequest) -> tuple[Digest, Digest] | None:
    """Digests of the Basic user and password sent, or None if there is no such header."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return _digest(user), _digest(password)


def matches_one(presented: tuple[Digest, Digest], candidates: Sequence[Candidate]) -> bool:
    """Whether *presented* is one of the real candidates, comparing every one of them.

    Both halves of every pair are compared and combined with ``&`` / ``|`` (no
    short circuit, no early return): the time taken is the same whichever pair
    matched, if any.
    """
    user, password = presented
    matched = 0
    for expected_user, expected_password, real in candidates:
        same_user = hmac.compare_digest(user, expected_user)
        same_password = hmac.compare_digest(password, expected_password)
        matched |= real & same_user & same_password
    return matched == 1


@csrf_exempt
@require_http_methods(["GET", "POST"])
def status_callback(request: HttpRequest) -> HttpResponse:
    """A legacy status callback, for whichever account owns the ``api_id`` it carries.

    The account whose ``API_ID`` the callback names (see
    :mod:`.services.callback_accounts`) authenticates it with its own
    ``CALLBACK_*`` credentials, and only its messages are touched.  A callback
    naming no account's ``API_ID`` is checked against the default account's
    credentials, then refused (``403 Unknown api_id``).
    """
    try:
        params = _callback_fields(request)
    except InvalidCallback as exc:
        return _text(400, str(exc))
    api_id = params.get("api_id", "")
    # Settings first: a settings error must not surface while a sent password is in a frame.
    try:
        route = route_callback(api_id)
    except AmbiguousApiId as exc:
        logger.error("Status callback refused: %s", exc)
        return _text(500, "Callback settings are invalid")
    config = route.account
    candidates = _candidates(config)
    if not any(real for _, _, real in candidates):
        logger.error(
            "Status callback for account %r refused: no callback credentials set (%s and "
            "%s, or %s)%s",
            config.alias,
            describe(config.key("CALLBACK_USERNAME")),
            describe(config.key("CALLBACK_PASSWORD")),
            describe(config.key("CALLBACK_BASIC_AUTH")),
            "" if route.owned else f"; no account has API_ID {api_id[:20]!r}",
        )
        return _text(403, "Callbacks are not configured")
    presented = _presented(request)
    if presented is None or not matches_one(presented, candidates):
        return _unauthorized()
    try:
        outcome = receive_callback(
            {key: params.get(key, "") for key in params},
            api_id=config.api_id if route.owned else "",
            account=config.alias,
        )
    except ForeignCallback as exc:
        # Authenticated, so a real callback: most likely a REST account without API_ID.
        logger.warning(
            "Status callback refused: api_id %r is no account's API_ID (set API_ID of the "
            "account whose API product sends it)",
            api_id[:20],
        )
        return _text(403, str(exc))
    except InvalidCallback as exc:
        return _text(400, str(exc))
    return _text(200, f"OK {outcome}")


def _callback_fields(request: HttpRequest) -> Mapping[str, str]:
    """The callback's fields: the query (GET), the form (POST), or a JSON object (the
    POST Clickatell's HTTP API also offers: ``Content-Type: application/json``)."""
    if request.method != "POST":
        return request.GET
    if request.content_type == "application/json":
        return legacy_json_fields(request.body)
    return request.POST


# -- JSON callbacks (the One API) ----------------------------------------------------------

#: Bodies larger than this are refused unread (413): a callback carries a few events.
MAX_JSON_CALLBACK = 1_000_000
#: Compared against when the account is unknown or has no secret, so the work (and the
#: time) is the same whether or not the account exists.
_NO_SECRET = secrets.token_urlsafe(32)
#: Read in place of an unknown account's settings: the same work as reading a real one.
_NO_ACCOUNT = ClickatellSettings({"CALLBACK_SECRET": ""})


def _quiet(response: HttpResponse) -> HttpResponse:
    """Keep Django's request logging (``django.request`` warns about every 4xx and 5xx,
    with the path) from writing the callback URL, which carries the secret, to a log."""
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


#: The alias of a path under ``one-api/`` (not secret), to name it in the log.
_ONE_API_ALIAS = re.compile(r"one-api/([A-Za-z0-9_-]{1,64})/")


@csrf_exempt
def callback_not_found(request: HttpRequest) -> HttpResponse:
    """Any path under the callback URLs that names no callback: a bare 404, quietly.

    Django would log "Not Found: <path>" (``django.request``) and, with ``DEBUG``
    on, render the path on its 404 page; under ``one-api/`` the path carries a
    secret -- a mistyped one, a rotated one Clickatell still uses, or one with a
    ``/`` that no route can match.  Logged here without the path.
    """
    found = _ONE_API_ALIAS.search(request.path_info)
    logger.warning(
        "A request to the callback URLs matched no callback%s: a mistyped or malformed "
        "callback URL (the path is not logged: it may carry a secret)",
        f" (One API account {found.group(1)!r})" if found else "",
    )
    return _quiet(_text(404, "Not Found"))


def _secret_matches(config: ClickatellSettings | None, presented: str) -> bool:
    """Whether *presented* is the account's callback secret, in constant time.

    Digests of the same length are compared whether or not the account exists
    or has a secret; an unset secret matches nothing.
    """
    expected = (config if config is not None else _NO_ACCOUNT).callback_secret.reveal()
    same = hmac.compare_digest(_digest(presented), _digest(expected or _NO_SECRET))
    return same and bool(expected)


@csrf_exempt
@sensitive_variables("secret", "config")
def one_api_callback(request: HttpRequest, account: str, secret: str) -> HttpResponse:
    """A One API status callback: ``POST <prefix>/one-api/<account>/<secret>/`` with JSON.

    The secret in the path authenticates it (the API signs nothing), plus HTTP
    Basic when the account sets ``CALLBACK_USERNAME``/``CALLBACK_PASSWORD``.  Every
    answer is quick: 200 once applied (any 2xx acknowledges), 400 with a short
    reason for a body that is not a callback, 403 for a wrong secret, 413 for a
    body too large.  No answer is logged with its path.
    """
    try:
        return _quiet(_one_api_callback(request, account, secret))
    except SettingError as exc:
        # Its message names the key and the account, never the value (check E007/E008).
        logger.error("One API callback for account %s refused: %s", account[:64], exc)
        return _quiet(_text(500, "Callback settings are invalid"))
    except Exception:
        # Django would log the path (the secret) and a DEBUG page would show it.
        logger.exception("One API callback for account %s failed", account[:64])
        return _quiet(_text(500, "Internal error"))


def _one_api_callback(request: HttpRequest, account: str, secret: str) -> HttpResponse:
    config = callback_account(account)
    if not _secret_matches(config, secret) or config is None:
        logger.warning("One API callback refused for account %s: wrong secret", account[:64])
        return _text(403, "Forbidden")
    candidates = _candidates(config)
    if any(real for _, _, real in candidates):
        presented = _presented(request)
        if presented is None or not matches_one(presented, candidates):
            return _unauthorized()
    if request.method != "POST":
        response = _text(405, "POST only")
        response["Allow"] = "POST"
        return response
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _text(400, "Bad Content-Length")
    if length > MAX_JSON_CALLBACK:
        return _text(413, "Too large")
    body = request.read(MAX_JSON_CALLBACK + 1)
    if len(body) > MAX_JSON_CALLBACK:
        return _text(413, "Too large")
    try:
        outcomes = receive_json_callback(account, body)
    except InvalidCallback as exc:
        return _text(400, str(exc))
    return _text(200, "OK " + " ".join(outcomes))
