"""An in-memory Clickatell for your test suite: ``BACKEND = "test"`` (or ``"locmem"``).

Like Django's locmem e-mail backend, nothing leaves the process: no socket, no
cache, no session.  Every message sent lands in :data:`STATE`'s ``outbox``, gets
a unique fake ``apimsgid`` and a status the test decides (:class:`Script`).

The state is process-wide on purpose: the services build a new backend for
every run, and a test asserts on what all of them sent.  Everything it holds is
guarded by one lock, so backends in several threads share it safely; worker
*processes* each have their own (run the work in the test's process: Celery
eager, or ``USE_CELERY = False``).

What it answers, and why (the same shapes as the HTTP backend, so that a test
exercises the services' real paths):

* ``send`` records every message, ``002`` (queued) or ``011`` (scheduled); a
  scripted refusal answers that message with an :class:`ErrorReply`, except a
  refusal of the account or the session, which fails the whole request with
  ``CommandNotSent`` -- nothing was carried out.
* ``query`` and ``stop`` know a message by ``apimsgid`` or by this account's
  ``climsgid``; otherwise ``UnknownMessage``.  ``stop`` answers ``006`` and
  stops the message while it is not final, and its final status once it is, as
  Clickatell does.
* a scripted failure (``fail_next``) raises the error given; with
  ``carried_out=True`` the command took effect first (a reply lost on the way
  back), which is what a send or a stop in doubt looks like.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ...exceptions import ClickatellError, CommandNotSent, InvalidMessage, UnknownMessage
from ...protocol.codes import (
    AUTHENTICATION_ERRORS,
    SESSION_ERRORS,
    describe_error,
    describe_status,
)
from ...protocol.replies import (
    BalanceReply,
    ErrorReply,
    MessageStatusReply,
    SentMessageReply,
    is_client_message_id,
    is_message_id,
)
from .base import Backend, Capabilities, OutgoingSms, Refusal, SendResult

if TYPE_CHECKING:
    from ...conf import ClickatellSettings

#: Commands a test can script, named as the exchange log names them.
COMMANDS = ("auth", "ping", "sendmsg", "querymsg", "delmsg", "getbalance")

#: The sending options the services store (``OutgoingSms.options``).
OPTIONS = frozenset({"deliv_time", "scheduled_time", "callback", "concat", "validity"})

QUEUED = "002"
SCHEDULED = "011"
STOPPED = "006"
DEFAULT_CREDIT = Decimal("100.000000")
#: The ``api_id`` the test gateway's status callbacks carry when the account sets no
#: ``API_ID`` (the test backend needs no legacy credentials; a legacy callback needs one).
TEST_API_ID = "1"

#: What the test backend can do unless told otherwise: the legacy HTTP API's
#: abilities, without sessions and with batches (so both send paths get exercised).
DEFAULT_CAPABILITIES = Capabilities(
    remote_stop=True,
    sessions=False,
    native_scheduling=True,
    scheduling_horizon=timedelta(days=7),
    batch_size=200,
    callbacks="form",
    query_by_client_id=True,
)

# Errors that refuse the account or its session: the command was not carried out.
_ACCOUNT_REFUSALS = AUTHENTICATION_ERRORS | SESSION_ERRORS


@dataclass(frozen=True)
class SentSms:
    """One message as the test gateway accepted it, in the outbox in send order."""

    account: str
    to: str
    text: str
    climsgid: str
    sender: str
    options: Mapping[str, Any]
    apimsgid: str
    sent_at: datetime


@dataclass(frozen=True)
class _Step:
    """One scripted answer: a refusal (``ERR`` code) or an error to raise."""

    refusal: ErrorReply | None = None
    error: Exception | None = None
    carried_out: bool = False


class _Message:
    """A sent message and its current status (changed only under the state's lock)."""

    __slots__ = ("sms", "status")

    def __init__(self, sms: SentSms, status: str) -> None:
        self.sms = sms
        self.status = status


class TestGatewayState:
    """Everything the test gateway knows, shared by every :class:`TestBackend` of the process."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self) -> None:
        self.lock = threading.RLock()
        #: Every message sent, in send order; cleared in place so references stay live.
        self.outbox: list[SentSms] = []
        #: Requests per command, scripted answers included.
        self.counts: Counter[str] = Counter()
        self.script = Script(self)
        self._messages: dict[str, _Message] = {}
        self._by_climsgid: dict[tuple[str, str], str] = {}
        self._steps: dict[str, deque[_Step]] = {}
        self._credit = DEFAULT_CREDIT
        self._capabilities: Capabilities | None = None
        # Never reset: an id is unique for the life of the process, across tests too.
        self._ids = itertools.count(1)

    def reset(self) -> None:
        """Forget every message, script and count (what a test starts from)."""
        with self.lock:
            del self.outbox[:]
            self.counts.clear()
            self._messages.clear()
            self._by_climsgid.clear()
            self._steps.clear()
            self._credit = DEFAULT_CREDIT
            self._capabilities = None

    # -- reading ---------------------------------------------------------------------------

    def status_of(self, reference: str) -> str:
        """The current status of a message, by ``apimsgid`` or ``climsgid``."""
        with self.lock:
            return self._find(reference).status

    def find(self, reference: str) -> SentSms:
        """The message sent with this ``apimsgid`` (or ``climsgid``: the latest such)."""
        with self.lock:
            return self._find(reference).sms

    def duplicates(self) -> list[tuple[str, str]]:
        """``(account, climsgid)`` pairs sent more than once: an SMS the recipient got twice."""
        with self.lock:
            seen = Counter((sms.account, sms.climsgid) for sms in self.outbox if sms.climsgid)
        return sorted(key for key, count in seen.items() if count > 1)

    def _find(self, reference: str) -> _Message:
        """The test asking: by ``apimsgid``, else the latest send with that ``climsgid``."""
        message = self._messages.get(reference)
        if message is not None:
            return message
        for sms in reversed(self.outbox):
            if sms.climsgid == reference and sms.apimsgid in self._messages:
                return self._messages[sms.apimsgid]
        raise LookupError(f"The test gateway has no message {reference[:40]!r}.")

    # -- what the backends call ------------------------------------------------------------

    @property
    def credit(self) -> Decimal:
        with self.lock:
            return self._credit

    def capabilities(self, default: Capabilities) -> Capabilities:
        with self.lock:
            return self._capabilities or default

    def request(self, command: str) -> _Step | None:
        """Count one request of *command* and take its next scripted answer, if any."""
        with self.lock:
            self.counts[command] += 1
            return self.take(command)

    def take(self, command: str, wanted: Callable[[_Step], bool] = bool) -> _Step | None:
        """Take the next scripted answer of *command* if it is *wanted*."""
        with self.lock:
            steps = self._steps.get(command)
            return steps.popleft() if steps and wanted(steps[0]) else None

    def record(self, account: str, message: OutgoingSms) -> SentMessageReply:
        with self.lock:
            apimsgid = f"test-{os.getpid():x}-{next(self._ids):08x}"
            sms = SentSms(
                account=account,
                to=message.to,
                text=message.text,
                climsgid=message.climsgid,
                sender=message.sender,
                options=MappingProxyType(dict(message.options)),
                apimsgid=apimsgid,
                sent_at=datetime.now(timezone.utc),
            )
            scheduled = "deliv_time" in message.options or "scheduled_time" in message.options
            self._messages[apimsgid] = _Message(sms, SCHEDULED if scheduled else QUEUED)
            if message.climsgid:
                self._by_climsgid[(account, message.climsgid)] = apimsgid
            self.outbox.append(sms)
        return SentMessageReply(apimsgid)

    def lookup(
        self, account: str, command: str, apimsgid: str | None, climsgid: str | None
    ) -> _Message:
        """The message ``querymsg``/``delmsg`` names, or the ``UnknownMessage`` Clickatell sends.

        Ids are the account's own: another account's message is unknown here.
        """
        check_reference(apimsgid, climsgid)
        with self.lock:
            if apimsgid:
                message = self._messages.get(apimsgid)
            else:
                found = self._by_climsgid.get((account, str(climsgid)))
                message = self._messages.get(found) if found else None
            if message is None or message.sms.account != account:
                raise UnknownMessage(103 if apimsgid else 104, command=command)
            return message


class Script:
    """What the test gateway answers next: statuses, refusals, failures, credit.

    Reached as ``STATE.script`` (and ``django_clickatell.testing.script``).  Every
    scripted answer is used once per request (``times`` requests in a row),
    oldest first, and forgotten by ``reset()``.
    """

    def __init__(self, state: TestGatewayState) -> None:
        self._state = state

    def status(self, reference: str, code: str) -> str:
        """Give a sent message (``apimsgid`` or ``climsgid``) a status; returns its ``apimsgid``.

        Any code, in any order: the test gateway does not guard the lifecycle,
        so that a test can check the package does (a status never moves back).
        """
        normalized = describe_status(code).code
        with self._state.lock:
            message = self._state._find(reference)
            message.status = normalized
            return message.sms.apimsgid

    def refuse_next(
        self, command: str, *, code: int, description: str = "", times: int = 1
    ) -> None:
        """Answer the next *times* requests of *command* with ``ERR <code>``.

        For ``sendmsg`` each message counts as one request and gets an
        :class:`ErrorReply` as its result; a refusal of the account or its
        session (001-005, 007, 108) fails the whole send with ``CommandNotSent``.
        Other commands raise the code's typed error (``UnknownMessage`` for 103,
        ``GatewayBusy`` for 901, …), account refusals wrapped in ``CommandNotSent``
        as the HTTP backend does -- except ``auth``, whose answer the refusal is.
        """
        refusal = ErrorReply(code, description or _described(code))
        self._add(command, _Step(refusal=refusal), times)

    def fail_next(
        self, command: str, *, error: Exception, carried_out: bool = False, times: int = 1
    ) -> None:
        """Raise *error* for the next *times* requests of *command*.

        ``carried_out=True``: the command took effect before the error (the
        messages are sent, the stop is made), as when a reply is lost -- the case
        a send or a stop in doubt must verify before trying again.
        """
        if carried_out and isinstance(error, CommandNotSent):
            raise ValueError("CommandNotSent says nothing was carried out.")
        self._add(command, _Step(error=error, carried_out=carried_out), times)

    def balance(self, credit: Decimal | int | str) -> None:
        """The credit ``getbalance`` answers from now on."""
        with self._state.lock:
            self._state._credit = Decimal(credit)

    def capabilities(self, **changes: Any) -> Capabilities:
        """Change what every test backend built from now on can do (``remote_stop=False``, …)."""
        with self._state.lock:
            self._state._capabilities = replace(DEFAULT_CAPABILITIES, **changes)
            return self._state._capabilities

    def _add(self, command: str, step: _Step, times: int) -> None:
        if command not in COMMANDS:
            raise ValueError(f"Unknown command {command!r}: one of {', '.join(COMMANDS)}.")
        if times < 1:
            raise ValueError("times must be at least 1.")
        with self._state.lock:
            self._state._steps.setdefault(command, deque()).extend([step] * times)


#: The one state of this process.
STATE = TestGatewayState()


class TestBackend(Backend):
    """The in-memory gateway (see the module): every instance shares :data:`STATE`.

    ``capabilities`` may be given per instance; otherwise what ``script.capabilities()``
    set, otherwise :data:`DEFAULT_CAPABILITIES`.  A subclass may set its own.
    """

    __test__ = False  # not a pytest test class, whatever its name

    name = "test"
    capabilities = DEFAULT_CAPABILITIES

    def __init__(
        self,
        config: ClickatellSettings,
        *,
        alias: str = "default",
        capabilities: Capabilities | None = None,
        state: TestGatewayState | None = None,
    ) -> None:
        super().__init__(config, alias=alias)
        self.state = state or STATE
        chosen = capabilities or self.state.capabilities(type(self).capabilities)
        # An instance's own answer to the class's question; the services only read it.
        self.__dict__["capabilities"] = chosen

    @classmethod
    def current_capabilities(cls) -> Capabilities:
        """What ``script.capabilities()`` set for the backends built from now on, if anything."""
        return STATE.capabilities(cls.capabilities)

    # -- messages --------------------------------------------------------------------------

    def send(self, messages: Sequence[OutgoingSms]) -> list[SendResult]:
        for message in messages:
            self._check(message)
        if len(messages) > self.capabilities.batch_size:
            raise InvalidMessage(
                f"{len(messages)} messages in one request; this backend takes "
                f"{self.capabilities.batch_size}."
            )
        with self.state.lock:
            self.state.counts["sendmsg"] += 1
            # What befalls the request as a whole comes first: a failure, or a refused account.
            whole = self.state.take("sendmsg", _concerns_the_request)
            if whole is not None and not whole.carried_out:
                self._answer(whole, "sendmsg")
            results: list[SendResult] = []
            for message in messages:
                refused = self.state.take("sendmsg", _refuses_a_message)
                if refused is not None and refused.refusal is not None:
                    results.append(_refused_message(refused.refusal, message))
                else:
                    results.append(self.state.record(self.alias, message))
            self._answer(whole, "sendmsg")  # sent, then the reply was lost
        return results

    def query(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        with self.state.lock:
            self._answer(self.state.request("querymsg"), "querymsg")
            message = self.state.lookup(self.alias, "querymsg", apimsgid, climsgid)
            return MessageStatusReply(message.sms.apimsgid, message.status)

    def stop(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        with self.state.lock:
            step = self.state.request("delmsg")
            if step is None or not step.carried_out:
                self._answer(step, "delmsg")
            message = self.state.lookup(self.alias, "delmsg", apimsgid, climsgid)
            if not describe_status(message.status).final:
                message.status = STOPPED
            self._answer(step, "delmsg")  # stopped, then the reply was lost
            return MessageStatusReply(message.sms.apimsgid, message.status)

    def balance(self) -> BalanceReply:
        with self.state.lock:
            self._answer(self.state.request("getbalance"), "getbalance")
            return BalanceReply(self.state.credit)

    # -- the account -----------------------------------------------------------------------

    def check_credentials(self) -> None:
        self._answer(self.state.request("auth"), "auth")

    def keep_alive(self) -> None:
        self._answer(self.state.request("ping"), "ping")

    # -- helpers ---------------------------------------------------------------------------

    def _answer(self, step: _Step | None, command: str) -> None:
        """Raise what *step* scripted for *command*, if anything, as every backend raises it.

        A refused account becomes ``CredentialsRefused`` (and a 404
        ``WrongBaseUrl``), the one type each has on every backend.
        """
        if step is None:
            return
        if isinstance(step.error, ClickatellError):
            raise self.failure(step.error, command)
        if step.error is not None:
            raise step.error
        if step.refusal is not None:
            raise self.failure(_refused(command, step.refusal), command)

    def refused_credentials(self, code: int | None) -> Refusal:
        """Nothing to fix in the settings: ``testing.script`` scripted this refusal."""
        return (
            "the test gateway refused its credentials",
            (),
            "as testing.script scripted (refuse_next)",
        )

    def _check(self, message: OutgoingSms) -> None:
        """Refuse what the capabilities say the services should never have sent."""
        unknown = set(message.options) - OPTIONS
        if unknown:
            raise InvalidMessage(f"Unknown sending options: {', '.join(sorted(unknown))}.")
        if message.climsgid and not is_client_message_id(message.climsgid):
            raise InvalidMessage("climsgid must be 1-32 letters and digits.")
        horizon = self.capabilities.scheduling_horizon
        ahead = _scheduled_ahead(message.options)
        if ahead is None:
            return
        if not self.capabilities.native_scheduling:
            raise InvalidMessage("This backend cannot schedule: the services hold such messages.")
        if horizon is not None and ahead > horizon + timedelta(minutes=1):
            raise InvalidMessage(f"Scheduled beyond this backend's horizon ({horizon}).")


def check_reference(apimsgid: str | None, climsgid: str | None) -> str:
    """Exactly one valid id, checked as the HTTP client checks it (``ValueError``)."""
    if bool(apimsgid) == bool(climsgid):
        raise ValueError("Pass exactly one of apimsgid or climsgid.")
    if apimsgid:
        if not is_message_id(apimsgid):
            raise ValueError(f"Not a Clickatell message id: {apimsgid[:40]!r}")
        return apimsgid
    assert climsgid is not None
    if not is_client_message_id(climsgid):
        raise ValueError(f"Not a client message id (1-32 letters and digits): {climsgid[:40]!r}")
    return climsgid


def _scheduled_ahead(options: Mapping[str, Any]) -> timedelta | None:
    if "deliv_time" in options:
        return timedelta(minutes=int(options["deliv_time"]))
    if "scheduled_time" in options:
        at = datetime.fromtimestamp(int(options["scheduled_time"]), tz=timezone.utc)
        return at - datetime.now(timezone.utc)
    return None


def _described(code: int) -> str:
    return str(describe_error(code).label)


def _concerns_the_request(step: _Step) -> bool:
    return step.error is not None or (
        step.refusal is not None and step.refusal.code in _ACCOUNT_REFUSALS
    )


def _refuses_a_message(step: _Step) -> bool:
    return step.refusal is not None and step.refusal.code not in _ACCOUNT_REFUSALS


def _refused(command: str, refusal: ErrorReply) -> ClickatellError:
    """The typed error an ``ERR`` answer to *command* stands for, as the HTTP backend raises it.

    A refused account or session means the command was not carried out
    (``CommandNotSent``); for ``auth`` the refusal itself is the answer.
    """
    error = refusal.as_exception(command)
    if command != "auth" and refusal.code in _ACCOUNT_REFUSALS:
        return CommandNotSent(command, error)
    return error


def _refused_message(refusal: ErrorReply, message: OutgoingSms) -> ErrorReply:
    return ErrorReply(refusal.code, refusal.description, to=message.to)


__all__ = [
    "COMMANDS",
    "DEFAULT_CAPABILITIES",
    "STATE",
    "Script",
    "SentSms",
    "TestBackend",
    "TestGatewayState",
]
