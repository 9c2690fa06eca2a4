"""The status callback endpoint Clickatell pushes message statuses to.

Authenticated with HTTP Basic credentials (``CALLBACK_USERNAME`` /
``CALLBACK_PASSWORD``, set in the Clickatell account; compared in constant
time), CSRF-exempt because Clickatell cannot send a token, and quick: one
lookup and one conditional update.  Bad requests get a 4xx with a short
reason and change nothing; unknown messages are kept for later matching and
answered 200, or Clickatell would retry for days.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .conf import app_settings
from .exceptions import InvalidCallback
from .services.callbacks import ForeignCallback, receive_callback

logger = logging.getLogger("django_clickatell.callbacks")


def _text(status: int, reason: str) -> HttpResponse:
    return HttpResponse(reason, status=status, content_type="text/plain; charset=utf-8")


def _unauthorized() -> HttpResponse:
    response = _text(401, "Unauthorized")
    response["WWW-Authenticate"] = 'Basic realm="clickatell-callback", charset="UTF-8"'
    return response


def _authorized(request: HttpRequest) -> bool:
    expected_user = app_settings.callback_username
    expected_password = app_settings.callback_password.reveal()
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Both compared, always, in constant time: no early exit reveals which was wrong.
    user_ok = hmac.compare_digest(user.encode(), expected_user.encode())
    password_ok = hmac.compare_digest(password.encode(), expected_password.encode())
    return user_ok and password_ok


@csrf_exempt
@require_http_methods(["GET", "POST"])
def status_callback(request: HttpRequest) -> HttpResponse:
    if not (app_settings.callback_username and app_settings.callback_password):
        logger.error("Status callback refused: CALLBACK_USERNAME/CALLBACK_PASSWORD not set")
        return _text(403, "Callbacks are not configured")
    if not _authorized(request):
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
