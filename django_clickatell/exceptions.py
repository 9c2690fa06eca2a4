"""The exceptions django-clickatell raises: import them from here.

They are defined in :mod:`django_clickatell.protocol.errors` (the protocol
layer raises them without importing anything above it); this module is their
public home.
"""

from __future__ import annotations

from .protocol.errors import (
    AccountMisconfigured,
    AuthenticationError,
    ClickatellError,
    CommandNotSent,
    CredentialsRefused,
    GatewayBusy,
    GatewayError,
    GatewayHTTPError,
    GatewayRateLimited,
    GatewayServerError,
    GatewayTimeout,
    GatewayUnreachable,
    GuardTripped,
    InvalidCallback,
    InvalidInput,
    InvalidMessage,
    ProtocolError,
    QueryByClientIdUnsupported,
    RemoteStopUnsupported,
    SessionExpired,
    SessionUnavailable,
    TransientError,
    TransportError,
    UnknownMessage,
    WrongBaseUrl,
    error_for_code,
)

__all__ = [
    "AccountMisconfigured",
    "AuthenticationError",
    "ClickatellError",
    "CommandNotSent",
    "CredentialsRefused",
    "GatewayBusy",
    "GatewayError",
    "GatewayHTTPError",
    "GatewayRateLimited",
    "GatewayServerError",
    "GatewayTimeout",
    "GatewayUnreachable",
    "GuardTripped",
    "InvalidCallback",
    "InvalidInput",
    "InvalidMessage",
    "ProtocolError",
    "QueryByClientIdUnsupported",
    "RemoteStopUnsupported",
    "SessionExpired",
    "SessionUnavailable",
    "TransientError",
    "TransportError",
    "UnknownMessage",
    "WrongBaseUrl",
    "error_for_code",
]
