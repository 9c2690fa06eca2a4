"""``BASE_URL``: its form when read, and whether the password may travel to it.

The form is checked on every read (an http(s) root, no credentials, query or
fragment).  Whether the scheme is safe is a separate question asked twice: by
the system check ``E003`` at start-up and by :func:`require_secure_base_url`
before the transport sends anything, so a bad URL is refused even where the
checks never ran.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from .errors import CredentialsInUrl, MalformedUrl, describe
from .values import TEXT, Kind


def _base_url(key: str, value: object) -> str:
    url = TEXT(key, value)
    # Credentials and queries first: the messages after these may echo the URL.
    if "@" in url.split("//", 1)[-1].split("/", 1)[0]:
        raise CredentialsInUrl(
            f"{describe(key)} must not carry credentials (user:password@): the URL is "
            "logged and shown; the password goes in PASSWORD."
        )
    if "?" in url or "#" in url:
        raise MalformedUrl(f"{describe(key)} must not carry a query or fragment.")
    if not url.startswith(("http://", "https://")):
        raise MalformedUrl(f"{describe(key)} must be an http(s) URL, got {url!r}.")
    return url if url.endswith("/") else url + "/"


BASE_URL = Kind(
    _base_url,
    "str, URL",
    "an http(s) URL without credentials, query or fragment; http only to a loopback host",
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_base_url_reason(url: str, key: str = "BASE_URL") -> str | None:
    """Why *url* must not carry the password, or None if it may (https, or loopback).

    *key* is the setting it was read from (an ``AccountKey`` for a named account), so
    the message names the dict to fix."""
    parts = urlsplit(url)
    if parts.scheme == "https" or is_loopback(parts.hostname or ""):
        return None
    return (
        f"{describe(key)} is not https: {url!r}. Credentials and session ids would "
        "cross the network in clear text; plain http is accepted only for a loopback simulator."
    )


def require_secure_base_url(url: str, key: str = "BASE_URL") -> None:
    """Refuse, before anything is sent, a gateway URL that would expose the password."""
    reason = insecure_base_url_reason(url, key)
    if reason:
        raise ImproperlyConfigured(reason)
