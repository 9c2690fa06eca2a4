"""Guards against runaway sending, per account: caps, destinations, the opt-out list.

The bad day this is for (issue 22): a bug loops over ``send_sms``, or a form is
abused to send to premium-rate destinations (SMS pumping), and it runs until
someone notices the bill.  Each guard is optional and off by default (settings
``GUARD_*`` of the account, conf/options.py):

- ``max_per_hour`` / ``max_per_day`` (``GUARD_MAX_PER_HOUR``/``_PER_DAY``): the
  messages that leave the account in any rolling hour / 24 hours;
- ``max_per_recipient_per_hour`` (``GUARD_MAX_PER_RECIPIENT_PER_HOUR``);
- ``destinations`` (``GUARD_ALLOWED_DESTINATIONS``): calling codes or regions,
  read from the E.164 number (:func:`~..protocol.msisdn.destination`);
- ``opt_out`` (``GUARD_OPT_OUT``): the numbers of the :class:`~..models.OptOut` list.

**Checked twice.**  At composing (:func:`check_compose`, before anything is
recorded): a ``send_sms`` that any guard refuses raises :class:`GuardTripped`
for the whole call -- a bulk send is refused whole, never half recorded -- naming
the guard and the setting to raise.  The caps are only *read* there (messages
due now; a held one is checked when it is released).  And right before each send
request leaves (:func:`lets_go`, one call in ``SendRun.admit``, so every send,
release, retry and resend after a verification passes it), where the caps are
*counted*: a message counts once its request is about to leave.  What trips
there:

- opted out, or a destination no longer allowed: **final** -- ``FAILED`` with the
  reason ("Not sent: ... (GUARD_OPT_OUT)"); no request, nothing logged as asked;
- a cap reached (by other processes since composing), or the cache down:
  **waits** -- queued, ``waiting_for = "guard"``; ``requeue_stalled_work`` hands it
  on and it goes out, once, when there is room.

**Counting** is in the shared cache (``CACHE_ALIAS``), so every process on every
machine counts against one cap: one counter per time bucket (five minutes for
the hourly caps, over the last 13 buckets; an hour for the daily cap, over the
last 25), taken with an atomic ``incr`` and given back (``decr``) if the sum of the
window is then over the cap.  The window counted is always at least the hour
(day), so **no overshoot**: at most the cap leaves in any 60 minutes (24 hours),
however many processes race -- the price is up to one bucket of
over-caution.  This assumes the machines' clocks agree (NTP).

**Cache down: refuse.**  No process can count without the cache, so while it
does not answer an account with a cap sends nothing: ``send_sms`` raises
``GuardTripped`` (guard ``cache``) and messages about to leave wait as above.
Guards without a count (destinations, opt-outs) go on working.  Refusing is the
safe choice for a spending guard: a cache outage never becomes a runaway.

A trip of a cap or of the destinations guard pauses the account when
``GUARDS_PAUSE_ON_TRIP`` is set (:func:`.pausing.pause_account`); an opted-out
number never does.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches
from django.db import IntegrityError, transaction
from django.db.models import Q

from ..conf import ClickatellSettings, SettingError, account_settings
from ..conf.errors import describe
from ..exceptions import GatewayError, GuardTripped, InvalidInput, InvalidMessage
from ..models import OptOut, OptOutSource, OutboundMessage, SendState, WaitingFor
from ..protocol.msisdn import destination, parse_recipient
from ..signals import number_opted_in, number_opted_out
from . import claims, pausing, recording
from .reports import Report

logger = logging.getLogger("django_clickatell.guards")

#: The setting of each guard (how to raise it), by guard name.
KEYS = {
    "max_per_hour": "GUARD_MAX_PER_HOUR",
    "max_per_day": "GUARD_MAX_PER_DAY",
    "max_per_recipient_per_hour": "GUARD_MAX_PER_RECIPIENT_PER_HOUR",
    "destinations": "GUARD_ALLOWED_DESTINATIONS",
    "opt_out": "GUARD_OPT_OUT",
    "cache": "CACHE_ALIAS",
}
#: How the reason of a send a guard refused right before its request begins.
REFUSED = "Not sent: refused by the"
#: Most keys read from the cache in one request (a bulk send's per-recipient counts).
READ_CHUNK = 1000


class CacheDown(Exception):
    """The cache that counts the caps did not answer."""


@dataclass(frozen=True)
class Window:
    """A rolling window counted in *buckets* buckets of *bucket* seconds: the current one and
    enough before it that the buckets always cover at least ``(buckets - 1) * bucket``."""

    bucket: int
    buckets: int

    def numbers(self, now: float) -> list[int]:
        current = int(now // self.bucket)
        return list(range(current - self.buckets + 1, current + 1))

    @property
    def ttl(self) -> int:
        return self.bucket * (self.buckets + 1)


HOUR = Window(300, 13)
DAY = Window(3600, 25)


@dataclass(frozen=True)
class Cap:
    """One counting guard as it applies to one account (and recipient)."""

    guard: str
    limit: int
    window: Window
    name: str  # the counter's name: "hour", "day", or "to:<number>"

    @property
    def shared(self) -> bool:
        """Counted for the whole account (its earlier buckets worth remembering)."""
        return not self.name.startswith("to:")


class _EarlierSums:
    """What the earlier buckets of an account-wide cap held, read once per current bucket
    by each process.

    Only the current bucket is counted into (clocks agreeing), and the earlier ones
    only ever go down (a give-back), so a remembered sum is never too low: it errs
    toward refusing.  Keyed by the current bucket, so a new bucket reads afresh.
    """

    LIMIT = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sums: dict[str, int] = {}

    def get(self, current: str) -> int | None:
        return self._sums.get(current)

    def put(self, current: str, total: int) -> None:
        with self._lock:
            if len(self._sums) >= self.LIMIT:
                self._sums.clear()
            self._sums[current] = total

    def clear(self) -> None:
        """Forget every sum (tests that empty the cache: "an hour later")."""
        with self._lock:
            self._sums.clear()


_EARLIER = _EarlierSums()


def forget() -> None:
    """Read the earlier buckets afresh (the cache was emptied behind this process's back)."""
    _EARLIER.clear()


class Counter:
    """The caps' counters of one account in the shared cache."""

    def __init__(self, config: ClickatellSettings, alias: str) -> None:
        self.cache = caches[config.cache_alias]
        self.base = f"{config.cache_key_prefix}:guard:{alias}"

    def _keys(self, cap: Cap, now: float) -> list[str]:
        return [f"{self.base}:{cap.name}:{n}" for n in cap.window.numbers(now)]

    def counts(self, caps: Sequence[Cap], now: float) -> list[int]:
        """What each cap's window holds now (a read, counting nothing)."""
        keys = [self._keys(cap, now) for cap in caps]
        flat = [key for group in keys for key in group]
        found: dict[str, Any] = {}
        try:
            for start in range(0, len(flat), READ_CHUNK):
                found.update(self.cache.get_many(flat[start : start + READ_CHUNK]))
        except Exception as exc:  # any failure of the cache: nothing can be counted
            raise CacheDown(type(exc).__name__) from exc
        return [sum(int(found.get(key) or 0) for key in group) for group in keys]

    def take(self, cap: Cap, now: float) -> str:
        """Count one message against *cap* if there is room: the key of the bucket it was
        counted in (for :meth:`give_back`), or "" if there is none.

        Two round trips to the cache in the common case (one for an account-wide cap
        whose earlier buckets this process has read in the current bucket: see
        :class:`_EarlierSums`).  A count that lands after its bucket ended (the clock
        moved on between reading it and the ``incr``) is given back and taken again in
        the new bucket, so an ended bucket never grows: what a process remembered of it
        stays true.
        """
        for _attempt in range(3):
            numbers = cap.window.numbers(now)
            keys = [f"{self.base}:{cap.name}:{n}" for n in numbers]
            current, earlier = keys[-1], keys[:-1]
            try:
                value = self._incr(current, cap.window.ttl, fresh=not cap.shared)
                now = time.time()
                if int(now // cap.window.bucket) != numbers[-1]:
                    self.cache.decr(current)
                    continue  # the bucket ended under us: count in the new one
                before = _EARLIER.get(current) if cap.shared else None
                if before is None:
                    before = sum(int(v or 0) for v in self.cache.get_many(earlier).values())
                    if cap.shared:
                        _EARLIER.put(current, before)
                if before + value <= cap.limit:
                    return current
                self.cache.decr(current)
            except ValueError:
                return ""  # the bucket vanished under us: counted nothing, refuse to be safe
            except Exception as exc:
                raise CacheDown(type(exc).__name__) from exc
            return ""
        return ""  # the clock jumped thrice: refuse rather than guess

    def _incr(self, key: str, ttl: int, *, fresh: bool) -> int:
        """``incr`` the bucket, creating it (with its lifetime) the first time; *fresh*: it
        is most likely new (a recipient's), so try creating it first."""
        if fresh and self.cache.add(key, 1, timeout=ttl):
            return 1
        try:
            return int(self.cache.incr(key))
        except ValueError:  # not there yet (or evicted): create it, once
            self.cache.add(key, 0, timeout=ttl)
            return int(self.cache.incr(key))

    def give_back(self, key: str) -> None:
        """Uncount one message :meth:`take` counted in bucket *key* (another cap refused it)."""
        with contextlib.suppress(Exception):  # a lost give-back only over-counts: safe
            self.cache.decr(key)


def caps_of(config: ClickatellSettings, recipient: str | None = None) -> list[Cap]:
    """The counting guards the account has on (the per-recipient one if *recipient*)."""
    caps = []
    if config.guard_max_per_hour:
        caps.append(Cap("max_per_hour", config.guard_max_per_hour, HOUR, "hour"))
    if config.guard_max_per_day:
        caps.append(Cap("max_per_day", config.guard_max_per_day, DAY, "day"))
    if recipient is not None and config.guard_max_per_recipient_per_hour:
        limit = config.guard_max_per_recipient_per_hour
        caps.append(Cap("max_per_recipient_per_hour", limit, HOUR, f"to:{recipient}"))
    return caps


def _key(config: ClickatellSettings, guard: str) -> str:
    """The setting of *guard* as messages name it (in the account's own dict)."""
    key = KEYS[guard]
    return describe(key if guard == "cache" else config.key(key))


def _tripped(config: ClickatellSettings, alias: str, guard: str, what: str) -> GuardTripped:
    key = _key(config, guard)
    how = {
        "opt_out": "Remove them from the request, or take them off the opt-out list "
        "(api.opt_in, or the admin's opt-out list) if they opted in again.",
        "destinations": f"Add the country to {key} if it is meant to be sent to.",
        "cache": "Counting needs the shared cache; bring it back, or set the account's caps "
        "to 0 to send uncounted.",
    }.get(guard, f"Wait for room, or raise {key} if this volume is intended.")
    return GuardTripped(
        f"Refused by the {guard} guard of account {alias!r} ({key}): {what}. {how} Nothing "
        "was recorded or sent.",
        guard=guard,
        key=KEYS[guard],
        account=alias,
    )


# -- at composing -----------------------------------------------------------------------------


def check_compose(alias: str, numbers: Sequence[str], *, now_due: bool) -> None:
    """Refuse the whole ``send_sms`` if any guard would: :class:`GuardTripped`, nothing recorded.

    *numbers* are the normalised recipients; *now_due*: the messages go to the send
    path now (the caps are read; held ones are counted when released).
    """
    config = account_settings(alias)  # a bad GUARD_* value raises, naming the key
    if config.guard_opt_out:
        listed = sorted(opted_out_among(numbers, alias))
        if listed:
            shown = ", ".join(f"+{n}" for n in listed[:5]) + (" ..." if len(listed) > 5 else "")
            raise _tripped(config, alias, "opt_out", f"{len(listed)} on the opt-out list ({shown})")
    allowed = config.guard_allowed_destinations
    if allowed:
        barred = [n for n in numbers if not allows(allowed, n)]
        if barred:
            raise _trip(config, alias, "destinations", _barred(barred, allowed))
    if now_due:
        _check_caps(config, alias, numbers)


def _check_caps(config: ClickatellSettings, alias: str, numbers: Sequence[str]) -> None:
    account_caps = caps_of(config)
    per_recipient = caps_of(config, "")[len(account_caps) :]
    if not account_caps and not per_recipient:
        return
    now = time.time()
    counter = Counter(config, alias)
    try:
        for cap, held in zip(account_caps, counter.counts(account_caps, now), strict=True):
            if held + len(numbers) > cap.limit:
                what = (
                    f"{held} sent in the window, {len(numbers)} more would pass the cap of "
                    f"{cap.limit}"
                )
                raise _trip(config, alias, cap.guard, what)
        if per_recipient:
            limit = per_recipient[0].limit
            caps = [Cap(per_recipient[0].guard, limit, HOUR, f"to:{n}") for n in numbers]
            full = [
                n
                for n, held in zip(numbers, counter.counts(caps, now), strict=True)
                if held + 1 > limit
            ]
            if full:
                what = f"+{full[0]} already had {limit} in the last hour" + (
                    f" (and {len(full) - 1} more numbers)" if len(full) > 1 else ""
                )
                raise _trip(config, alias, "max_per_recipient_per_hour", what)
    except CacheDown as exc:
        raise _tripped(config, alias, "cache", f"the cache does not answer ({exc})") from None


def _barred(barred: Sequence[str], allowed: Iterable[int | str]) -> str:
    shown = ", ".join(f"+{n}" for n in barred[:3]) + (" ..." if len(barred) > 3 else "")
    return f"{len(barred)} recipients outside {', '.join(map(str, allowed))} ({shown})"


def allows(allowed: Iterable[int | str], number: str) -> bool:
    """Whether *number* goes to an allowed destination (by calling code or region)."""
    try:
        where = destination(number)
    except InvalidMessage:
        return False
    return any(entry in (where.calling_code, where.region) for entry in allowed)


def _trip(config: ClickatellSettings, alias: str, guard: str, what: str) -> GuardTripped:
    """A cap or the destinations guard tripped: logged, and the account paused if asked."""
    error = _tripped(config, alias, guard, what)
    logger.warning("%s", error)
    if config.guards_pause_on_trip:
        pause_for(alias, guard, str(_key(config, guard)))
    return error


def pause_for(alias: str, guard: str, key: str) -> None:
    """Pause *alias* because its *guard* tripped (``GUARDS_PAUSE_ON_TRIP``)."""
    try:
        pausing.pause_account(alias, reason=f"The {guard} guard tripped ({key})", via="guard")
    except Exception:
        logger.exception("Could not pause account %r after its %s guard tripped", alias, guard)


# -- right before a request leaves ------------------------------------------------------------


def lets_go(message: OutboundMessage, token: str, report: Report) -> bool:
    """May the send of *message* leave now?  If not, it is settled (final) or waits, and the
    run skips it (``report.rejected`` / ``report.waiting``).  The caps are counted here.

    A ``GUARD_*`` setting that cannot be read (the system checks report it) makes the
    message wait rather than leave unguarded.
    """
    try:
        return _lets_go(message, token, report, account_settings(message.account))
    except SettingError as exc:
        logger.error("Message %s waits: a guard setting is wrong: %s", message.pk, exc)
        _wait(message, token, report, None, "settings")
        return False


def _lets_go(
    message: OutboundMessage, token: str, report: Report, config: ClickatellSettings
) -> bool:
    alias, recipient = message.account, message.recipient
    if config.guard_opt_out and opted_out_among([recipient], alias):
        _refuse(message, token, report, config, "opt_out", f"+{recipient} opted out")
        return False
    allowed = config.guard_allowed_destinations
    if allowed and not allows(allowed, recipient):
        _refuse(message, token, report, config, "destinations", _barred([recipient], allowed))
        if config.guards_pause_on_trip:
            pause_for(alias, "destinations", str(_key(config, "destinations")))
        return False
    caps = caps_of(config, recipient)
    if not caps:
        return True
    counter, now = Counter(config, alias), time.time()
    taken: list[str] = []
    try:
        for cap in caps:
            key = counter.take(cap, now)
            if not key:
                for done in taken:
                    counter.give_back(done)
                _wait(message, token, report, config, cap.guard)
                return False
            taken.append(key)
    except CacheDown as exc:
        for done in taken:
            counter.give_back(done)
        logger.warning(
            "Guards of account %r cannot count: the cache does not answer (%s); its sends "
            "wait until it does",
            alias,
            exc,
        )
        _wait(message, token, report, config, "cache")
        return False
    return True


def _refuse(
    message: OutboundMessage,
    token: str,
    report: Report,
    config: ClickatellSettings,
    guard: str,
    what: str,
) -> None:
    detail = f"{guard} guard ({_key(config, guard)}): {what}"
    reason = recording.clean_text(f"{REFUSED} {detail}")
    claims.release([message.pk], token, send_state=SendState.FAILED, send_error=reason)
    message.send_state = SendState.FAILED
    rejected = getattr(report, "rejected", None)
    if rejected is not None:
        rejected.append(message.pk)
    logger.warning("Message %s not sent: %s", message.pk, reason)


def _wait(
    message: OutboundMessage,
    token: str,
    report: Report,
    config: ClickatellSettings | None,
    guard: str,
) -> None:
    from .waiting import send_held_back

    send_held_back(message, token, WaitingFor.GUARD)
    waiting = getattr(report, "waiting", None)
    if waiting is not None:
        waiting.append(message.pk)
    if config is not None and guard != "cache":
        logger.warning(
            "Message %s of account %r waits: its %s guard (%s) is reached",
            message.pk,
            message.account,
            guard,
            _key(config, guard),
        )
        if config.guards_pause_on_trip:
            pause_for(message.account, guard, str(_key(config, guard)))


# -- the opt-out list ---------------------------------------------------------------------------


def opted_out_among(numbers: Sequence[str], alias: str | None = None) -> set[str]:
    """Which of *numbers* (normalised) are on the list, for every account or for *alias*
    (``None``: on it for any account).  One query."""
    rows = OptOut.objects.filter(number__in=list(numbers))
    if alias is not None:
        rows = rows.filter(Q(account="") | Q(account=alias))
    return set(rows.values_list("number", flat=True))


def is_opted_out(number: str, account: str | None = None) -> bool:
    """Whether *number* (any form ``send_sms`` accepts) is on the opt-out list (for
    *account*, or for any account)."""
    return bool(opted_out_among([_number(number)], account))


def _number(number: str) -> str:
    from .composing import default_region

    return parse_recipient(number, default_region())


def opt_out(
    number: str,
    *,
    reason: str = "",
    account: str = "",
    by: Any = None,
    source: str = OptOutSource.MANUAL,
    via: str = "",
) -> tuple[OptOut, bool]:
    """Put *number* on the opt-out list (for *account*, or every account if blank); returns
    the row and whether it is new (a number already listed keeps its first entry).
    ``InvalidMessage`` for what is no phone number, ``InvalidInput`` for an account not
    in the settings or a reason over 200 characters."""
    normalised = _number(number)
    if len(str(reason or "")) > pausing.REASON_LENGTH:
        raise InvalidInput(
            f"The reason for an opt-out is at most {pausing.REASON_LENGTH} characters"
        )
    text = pausing.clean_reason(reason)
    if account and source == OptOutSource.MANUAL:
        pausing.check_account(account)  # a typo would list the number for no account
    user = by if getattr(by, "pk", None) is not None else None
    try:
        with transaction.atomic():
            row, created = OptOut.objects.get_or_create(
                number=normalised,
                defaults={
                    "account": account,
                    "reason": text,
                    "source": source,
                    "created_by": user,
                },
            )
            if created:
                _log_entry(row, user, added=True, via=via)
    except IntegrityError:  # another process listed it meanwhile
        return OptOut.objects.get(number=normalised), False
    if created:
        logger.warning(
            "+%s put on the opt-out list%s by %s%s",
            normalised,
            f" of account {account!r}" if account else "",
            getattr(user, "username", "") or via or source,
            f" ({text})" if text else "",
        )
    return row, created


def opt_in(number: str, *, by: Any = None, via: str = "") -> bool:
    """Take *number* off the opt-out list; returns whether it was on it."""
    normalised = _number(number)
    user = by if getattr(by, "pk", None) is not None else None
    with transaction.atomic():
        row = OptOut.objects.select_for_update().filter(number=normalised).first()
        if row is None:
            return False
        _log_entry(row, user, added=False, via=via)
        row.delete()
    logger.warning(
        "+%s taken off the opt-out list by %s",
        normalised,
        getattr(user, "username", "") or via or "?",
    )
    return True


def refused_as_opted_out(message: OutboundMessage, error: GatewayError) -> None:
    """Clickatell refused *message* as opted out (legacy/REST 122, One API 26): list its number
    for its account, with the reason, so that the next send is refused here (``GUARD_OPT_OUT``)."""
    if not error.opted_out:
        return
    try:
        opt_out(
            message.recipient,
            reason=recording.clean_text(str(error))[:200],
            account=message.account,
            source=OptOutSource.GATEWAY,
            via="gateway",
        )
    except (InvalidMessage, IntegrityError):
        logger.exception("Could not list +%s as opted out", message.recipient)


def _log_entry(row: OptOut, user: Any, *, added: bool, via: str) -> None:
    """Tell the faces (the admin writes its ``LogEntry`` history from it): a signal, so
    the domain knows nothing of the admin."""
    signal = number_opted_out if added else number_opted_in
    signal.send(sender=OptOut, entry=row, user=user, via=via)
