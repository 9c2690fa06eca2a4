"""The typed Clickatell client: one method per command, typed replies, typed errors.

Commands authenticate with the shared session id; when Clickatell answers
``ERR 003``/``005`` the client renews the session (single-flight, see
:mod:`.session`) and repeats the command exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.core.cache import caches

from ..conf import ClickatellSettings, app_settings
from ..exceptions import SessionExpired
from ..protocol import replies
from ..protocol.redaction import Secret
from .session import SessionPolicy, SessionStore
from .transport import Transport, get_transport

R = TypeVar("R")


class ClickatellClient:
    """Commands of the legacy HTTP API for the account in ``settings.CLICKATELL``."""

    def __init__(
        self,
        config: ClickatellSettings | None = None,
        *,
        transport: Transport | None = None,
        sessions: SessionStore | None = None,
    ) -> None:
        self.config = config or app_settings
        self.username = self.config.username
        self.api_id = self.config.api_id
        self._password: Secret = self.config.password
        self.transport = transport or get_transport(self.config.base_url, self.config.timeout)
        self.sessions = sessions or SessionStore(
            caches[self.config.cache_alias],
            namespace=self.config.account_namespace,
            prefix=self.config.cache_key_prefix,
            policy=SessionPolicy(
                ttl=self.config.session_ttl,
                touch_interval=self.config.session_touch_interval,
                memo_seconds=self.config.session_memo_seconds,
                lock_timeout=self.config.auth_lock_timeout,
                wait_timeout=self.config.auth_wait_timeout,
                failure_ttl=self.config.auth_failure_ttl,
            ),
            authenticate=self._authenticate,
        )

    def __repr__(self) -> str:
        return f"<ClickatellClient user={self.username!r} api_id={self.api_id!r}>"

    # -- session ---------------------------------------------------------------------------

    def auth(self) -> None:
        """Check the credentials by opening a new session, which becomes the shared one."""
        self.sessions.forget()
        self.sessions.get()

    def ping(self) -> None:
        """Keep the shared session alive (Clickatell drops it after 15 minutes idle)."""
        self._call("ping", {}, lambda body, secrets: replies.parse_ping(body, secrets))

    def _authenticate(self) -> str:
        password = self._password
        body = self.transport.post(
            "auth", {"user": self.username, "password": password.reveal(), "api_id": self.api_id}
        )
        return replies.parse_auth(body, secrets=(password,)).session_id

    # -- messages --------------------------------------------------------------------------

    def delmsg(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> replies.MessageStatusReply:
        """Stop a scheduled or queued message; ``status == "006"`` means it was stopped."""
        fields = _message_reference(apimsgid, climsgid)
        return self._call(
            "delmsg",
            fields,
            lambda body, secrets: replies.parse_message_status(body, "delmsg", secrets),
        )

    def querymsg(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> replies.MessageStatusReply:
        """The current status of a message."""
        fields = _message_reference(apimsgid, climsgid)
        return self._call(
            "querymsg",
            fields,
            lambda body, secrets: replies.parse_message_status(body, "querymsg", secrets),
        )

    def getbalance(self) -> replies.BalanceReply:
        """The account's remaining credit."""
        return self._call(
            "getbalance", {}, lambda body, secrets: replies.parse_balance(body, secrets)
        )

    def getmsgcharge(self, *, apimsgid: str) -> replies.ChargeReply:
        """What a message cost, with its status."""
        fields = _message_reference(apimsgid, None)
        return self._call(
            "getmsgcharge", fields, lambda body, secrets: replies.parse_charge(body, secrets)
        )

    def sendmsg(
        self, fields: dict[str, str]
    ) -> list[replies.SentMessageReply | replies.ErrorReply]:
        """Send raw ``sendmsg`` fields (the sending service builds and validates them)."""
        return self._call(
            "sendmsg", fields, lambda body, secrets: replies.parse_send(body, secrets)
        )

    # -- plumbing --------------------------------------------------------------------------

    def _call(
        self,
        command: str,
        fields: dict[str, str],
        parse: Callable[[str, tuple[Secret | str, ...]], R],
    ) -> R:
        session_id = self.sessions.get()
        for attempt in (1, 2):
            body = self.transport.post(command, {**fields, "session_id": session_id})
            try:
                result = parse(body, (self._password, session_id))
            except SessionExpired:
                if attempt == 2:
                    raise
                session_id = self.sessions.renew(stale=session_id)
                continue
            self.sessions.touch(session_id)
            return result
        raise AssertionError("unreachable")  # pragma: no cover


def _message_reference(apimsgid: str | None, climsgid: str | None) -> dict[str, str]:
    """Exactly one message id, validated before any request is made."""
    if bool(apimsgid) == bool(climsgid):
        raise ValueError("Pass exactly one of apimsgid or climsgid.")
    if apimsgid:
        if not replies.is_message_id(apimsgid):
            raise ValueError(f"Not a Clickatell message id: {apimsgid[:40]!r}")
        return {"apimsgid": apimsgid}
    assert climsgid is not None
    if not replies.is_client_message_id(climsgid):
        raise ValueError(f"Not a client message id (1-32 letters and digits): {climsgid[:40]!r}")
    return {"climsgid": climsgid}
