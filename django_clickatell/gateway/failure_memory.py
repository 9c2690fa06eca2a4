"""A refused login as the shared cache remembers it, for ``AUTH_FAILURE_TTL`` seconds.

Remembering the refusal keeps every worker from repeating a login that
Clickatell just refused (and from getting the account locked).  The cache keeps
only the code and a short redacted description -- never the request, never a
secret -- and whatever it hands back is checked again before it is raised: the
cache is shared, so a malformed entry counts as no entry.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..exceptions import AuthenticationError
from ..protocol.redaction import Secret, excerpt

#: Longest description of a refused login kept in the cache (redacted, printable).
DESCRIPTION_LIMIT = 200

#: The cached value: ``(code, description)``.
FailureEntry = tuple[int | None, str]


def failure_entry(exc: AuthenticationError, secrets: Iterable[Secret]) -> FailureEntry:
    """What the cache keeps of *exc*: its code and a redacted description."""
    return exc.code, excerpt(exc.description, secrets, limit=DESCRIPTION_LIMIT)


def remembered_failure(value: object) -> AuthenticationError | None:
    """The cached refusal as an error to raise; anything malformed counts as absent."""
    if not isinstance(value, tuple) or len(value) != 2:
        return None
    code, description = value
    if not (code is None or (isinstance(code, int) and 0 <= code < 1_000_000)):
        return None
    if not isinstance(description, str):
        return None
    return AuthenticationError(code, excerpt(description, limit=DESCRIPTION_LIMIT), command="auth")
