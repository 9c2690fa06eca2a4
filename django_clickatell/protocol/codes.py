"""Message status and error code tables from the HTTP API specification.

Codes are compared as integers (gateways send ``6`` as well as ``006``) and
stored as the zero-padded three-digit strings Clickatell documents.  Unknown
codes are described, never rejected: the gateway may grow new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

CANCELLED_STATUS = "006"
#: Documented codes have three digits; longer unknown ones are kept up to this length.
MAX_STATUS_LENGTH = 8


@dataclass(frozen=True)
class StatusInfo:
    code: str
    label: str | Promise
    final: bool


@dataclass(frozen=True)
class ErrorInfo:
    code: int
    label: str | Promise
    known: bool = True


_STATUSES: tuple[StatusInfo, ...] = (
    StatusInfo("001", _("Message unknown"), final=False),
    StatusInfo("002", _("Message queued"), final=False),
    StatusInfo("003", _("Delivered to gateway"), final=False),
    StatusInfo("004", _("Received by recipient"), final=True),
    StatusInfo("005", _("Error with message"), final=True),
    StatusInfo("006", _("User cancelled message delivery"), final=True),
    StatusInfo("007", _("Error delivering message"), final=True),
    # Sources disagree on 008; it means "accepted", so more may follow.
    StatusInfo("008", _("OK, message received by gateway"), final=False),
    StatusInfo("009", _("Routing error"), final=True),
    StatusInfo("010", _("Message expired"), final=True),
    StatusInfo("011", _("Message queued for later delivery"), final=False),
    StatusInfo("012", _("Out of credit"), final=True),
    StatusInfo("014", _("Maximum MT limit exceeded"), final=True),
)
STATUSES: dict[str, StatusInfo] = {info.code: info for info in _STATUSES}
FINAL_STATUSES: frozenset[str] = frozenset(code for code, info in STATUSES.items() if info.final)

_ERRORS: tuple[ErrorInfo, ...] = (
    ErrorInfo(1, _("Authentication failed")),
    ErrorInfo(2, _("Unknown username or password")),
    ErrorInfo(3, _("Session ID expired")),
    ErrorInfo(4, _("Account frozen")),
    ErrorInfo(5, _("Missing session ID")),
    ErrorInfo(7, _("IP Lockdown violation")),
    ErrorInfo(100, _("Data malformed")),
    ErrorInfo(101, _("Invalid or missing parameters")),
    ErrorInfo(102, _("Invalid user data header")),
    ErrorInfo(103, _("Unknown API message ID")),
    ErrorInfo(104, _("Unknown client message ID")),
    ErrorInfo(105, _("Invalid destination address")),
    ErrorInfo(106, _("Invalid source address")),
    ErrorInfo(107, _("Empty message")),
    ErrorInfo(108, _("Invalid or missing API ID")),
    ErrorInfo(109, _("Missing message ID")),
    ErrorInfo(110, _("Error with email message")),
    ErrorInfo(111, _("Invalid protocol")),
    ErrorInfo(112, _("Invalid message type")),
    ErrorInfo(113, _("Maximum message parts exceeded")),
    ErrorInfo(114, _("Cannot route message")),
    ErrorInfo(115, _("Message expired")),
    ErrorInfo(116, _("Invalid Unicode data")),
    ErrorInfo(120, _("Invalid delivery time")),
    ErrorInfo(121, _("Destination mobile number blocked")),
    ErrorInfo(122, _("Destination mobile opted out")),
    ErrorInfo(123, _("Invalid Sender ID")),
    ErrorInfo(128, _("Number delisted")),
    ErrorInfo(130, _("Maximum MT limit exceeded")),
    ErrorInfo(201, _("Invalid batch ID")),
    ErrorInfo(202, _("No batch template")),
    ErrorInfo(301, _("No credit left")),
    ErrorInfo(302, _("Max allowed credit")),
    ErrorInfo(901, _("Internal error")),
)
ERRORS: dict[int, ErrorInfo] = {info.code: info for info in _ERRORS}

#: The account itself is refused: repeating the request cannot help.
AUTHENTICATION_ERRORS: frozenset[int] = frozenset({1, 2, 4, 7, 108})
#: The session id is gone: authenticate again and repeat the command once.
SESSION_ERRORS: frozenset[int] = frozenset({3, 5})
#: The gateway asks to be retried.
RETRYABLE_ERRORS: frozenset[int] = frozenset({901})
#: ``delmsg``/``querymsg`` named a message the gateway does not know.
UNKNOWN_MESSAGE_ERRORS: frozenset[int] = frozenset({103, 104})


def normalize_status(code: str | int) -> str:
    """Return *code* as the zero-padded string Clickatell documents (``6`` -> ``"006"``).

    Raises ``ValueError`` for anything that is not a non-negative integer.
    """
    text = str(code).strip()
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"status code must be digits, got {text[:16]!r}")
    significant = text.lstrip("0")
    # Checked before int(): converting thousands of digits is quadratic (and refused
    # by the interpreter past 4300), and no such code can be stored anyway.
    if len(significant) > MAX_STATUS_LENGTH:
        raise ValueError(f"status code too long: {text[:16]!r}…")
    return f"{int(significant or '0'):03d}"


def describe_status(code: str | int) -> StatusInfo:
    """Look a status code up; unknown codes are described and treated as not final."""
    normalized = normalize_status(code)
    info = STATUSES.get(normalized)
    if info is not None:
        return info
    return StatusInfo(normalized, _("Unknown status %(code)s") % {"code": normalized}, final=False)


def describe_error(code: int) -> ErrorInfo:
    info = ERRORS.get(code)
    if info is not None:
        return info
    return ErrorInfo(code, _("Unknown error %(code)03d") % {"code": code}, known=False)


def status_choices() -> list[tuple[str, str]]:
    """Choices for model fields: every documented status, labelled ``"006 – User cancelled…"``."""
    return [(info.code, f"{info.code} – {info.label}") for info in _STATUSES]
