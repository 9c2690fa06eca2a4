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
import secrets
from collections.abc import Sequence

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .conf import MAX_CALLBACK_CREDENTIALS, app_settings
from .exceptions import InvalidCallback
from .services.callbacks import ForeignCallback, receive_callback

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


def _candidates() -> list[Candidate]:
    """The accepted pairs as digests, padded with filler to :data:`COMPARED_PAIRS`."""
    real = [
        (_digest(user), _digest(password.reveal()), 1)
        for user, password in app_settings.callback_credentials
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
    # Settings first: a settings error must not surface while a sent password is in a frame.
    candidates = _candidates()
    if not any(real for _, _, real in candidates):
        logger.error(
            "Status callback refused: no callback credentials set (CALLBACK_USERNAME and "
            "CALLBACK_PASSWORD, or CALLBACK_BASIC_AUTH)"
        )
        return _text(403, "Callbacks are not configured")
    presented = _presented(request)
    if presented is None or not matches_one(presented, candidates):
        return _unauthorized()
    params = request.POST if request.method == "POST" else request.GET
    try:
        outcome = receive_callback(
            {key: params.get(key, "") for key in params}, api_id=app_settings.api_id
        )
    except ForeignCallback as exc:
        return _text(403, str(exc))
    except InvalidCallback as exc:
        return _text(400, str(exc))
    return _text(200, f"OK {outcome}")
