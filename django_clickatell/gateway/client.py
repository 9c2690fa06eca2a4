"""The typed Clickatell client: one method per command, typed replies, typed errors.

Commands authenticate with the shared session id; when Clickatell answers
``ERR 003``/``005`` the client renews the session (single-flight, see
:mod:`.session`) and repeats the command exactly once.

A command that was never carried out raises
:class:`~django_clickatell.exceptions.CommandNotSent` -- never the login's
error as if it were the command's answer: no session could be had (login
refused now or remembered as refused, transport or protocol failure during the
login, the session cache unreachable, another process's login not finished in
time), the account was refused on the command itself, or the session was
refused again right after the renewal.  At most one renewal per call.

Secrets never sit in plain text in a frame of this module: the password and
session ids are :class:`~django_clickatell.protocol.redaction.Secret` objects,
revealed only inside the transport's call into ``requests``, and replies are
parsed without keeping the body in a local.  Django's DEBUG page shows every
frame's locals (``sensitive_variables`` only hides them when ``DEBUG`` is off,
where it covers the error e-mails), so this discipline is what keeps the
password and the session id off that page.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.core.cache import caches
from django.views.decorators.debug import sensitive_variables

from ..conf import ClickatellSettings, app_settings
from ..exceptions import AuthenticationError, ClickatellError, CommandNotSent, SessionExpired
from ..protocol import replies
from ..protocol.redaction import Secret
from .sealing import SessionKeys
from .session import SessionPolicy, SessionStore
from .transport import FormValue, Transport, get_transport

R = TypeVar("R")
Parse = Callable[[str, tuple[Secret, ...]], R]


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
        self.transport = transport or get_transport(
            self.config.base_url, self.config.timeout, key=self.config.key("BASE_URL")
        )
        self.sessions = sessions or self._session_store()
        self._attempts = threading.local()

    def _session_store(self) -> SessionStore:
        config = self.config
        return SessionStore(
            caches[config.cache_alias],
            keys=SessionKeys(
                secret_key=settings.SECRET_KEY,
                base_url=config.base_url,
                api_id=self.api_id,
                username=self.username,
                password=self._password,
            ),
            prefix=config.cache_key_prefix,
            policy=SessionPolicy(
                ttl=config.session_ttl,
                touch_interval=config.session_touch_interval,
                memo_seconds=config.session_memo_seconds,
                lock_timeout=config.auth_lock_timeout,
                wait_timeout=config.auth_wait_timeout,
                failure_ttl=config.auth_failure_ttl,
            ),
            authenticate=self._authenticate,
            secrets=(self._password,),
        )

    def __repr__(self) -> str:
        return f"<ClickatellClient user={self.username!r} api_id={self.api_id!r}>"

    # -- session ---------------------------------------------------------------------------

    def auth(self) -> None:
        """Check the credentials by opening a new session, shared by all with these credentials.

        Raises the login's own error (``AuthenticationError`` for a refusal):
        that is the answer to ``auth``.  A refusal never evicts or blocks a
        session obtained with other credentials.
        """
        self.sessions.replace()

    def ping(self) -> None:
        """Keep the shared session alive (Clickatell drops it after 15 minutes idle)."""
        self._call("ping", {}, replies.parse_ping)

    @sensitive_variables()
    def _authenticate(self) -> Secret:
        reply = _parsed(
            replies.parse_auth, self.transport.post("auth", self._login_form()), (self._password,)
        )
        return Secret(reply.session_id)

    def _login_form(self) -> dict[str, FormValue]:
        return {"user": self.username, "password": self._password, "api_id": self.api_id}

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
        return self._call("getbalance", {}, replies.parse_balance)

    def getmsgcharge(self, *, apimsgid: str) -> replies.ChargeReply:
        """What a message cost, with its status."""
        fields = _message_reference(apimsgid, None)
        return self._call("getmsgcharge", fields, replies.parse_charge)

    def sendmsg(
        self, fields: dict[str, str]
    ) -> list[replies.SentMessageReply | replies.ErrorReply]:
        """Send raw ``sendmsg`` fields (the sending service builds and validates them)."""
        return self._call("sendmsg", fields, replies.parse_send)

    # -- plumbing --------------------------------------------------------------------------

    @property
    def refused_attempts(self) -> list[SessionExpired]:
        """The requests of this thread's last call that met ERR 003/005 before its last one.

        Each was a real request that Clickatell answered (and carried nothing
        out); the services log it, so the exchange log shows every request made.
        """
        return list(getattr(self._attempts, "refused", ()))

    def forget_refused_attempts(self) -> None:
        """Start this thread's next call afresh (a call given up before it was made)."""
        self._attempts.refused = []

    @sensitive_variables("session_id", "stale")
    def _call(self, command: str, fields: dict[str, str], parse: Parse[R]) -> R:
        self._attempts.refused = []
        session_id = self._session_for(command, self.sessions.get)
        try:
            return self._exchange(command, fields, session_id, parse)
        except SessionExpired as exc:
            # Renewed below, outside the handler: a renewal failure is about the login.
            self._attempts.refused.append(exc)
        stale = session_id
        session_id = self._session_for(command, lambda: self.sessions.renew(stale=stale))
        try:
            return self._exchange(command, fields, session_id, parse)
        except SessionExpired as exc:
            # Refused again right after the renewal: nothing was carried out. Bounded:
            # one renewal per call; the caller retries later.
            raise CommandNotSent(command, exc) from exc

    @staticmethod
    def _session_for(command: str, obtain: Callable[[], Secret]) -> Secret:
        """The session id for *command*, or ``CommandNotSent``: without one nothing is sent."""
        try:
            return obtain()
        except ClickatellError as exc:
            raise CommandNotSent(command, exc) from exc

    @sensitive_variables("session_id")
    def _exchange(
        self, command: str, fields: dict[str, str], session_id: Secret, parse: Parse[R]
    ) -> R:
        form: dict[str, FormValue] = {**fields, "session_id": session_id}
        try:
            result = _parsed(
                parse, self.transport.post(command, form), (self._password, session_id)
            )
        except AuthenticationError as exc:
            # The account itself was refused (ERR 001/002/004/007/108): the command was
            # answered but not carried out, which says nothing about the message.
            raise CommandNotSent(command, exc) from exc
        self.sessions.touch(session_id)
        return result


def _parsed(parse: Parse[R], body: str, secrets: tuple[Secret, ...]) -> R:
    """``parse(body, secrets)``, with the parser's frames cut from any error it raises.

    The parser's frames hold the raw reply, which may echo the password or a
    session id; the error itself carries only a redacted excerpt.  The reply is
    dropped from this frame too before the error leaves it, and so is whatever the
    parser chained to its error.
    """
    try:
        return parse(body, secrets)
    except Exception as exc:  # re-raised below: the same object, without the frames
        error = exc
    del body
    error.__cause__ = error.__context__ = None  # the parser's internals: frames with the reply
    raise error.with_traceback(None)


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
