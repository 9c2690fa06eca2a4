"""The legacy HTTP API (``api.clickatell.com/http/``) as a backend: the original client, unchanged.

Everything the client does stays as it was -- the cache-shared session with
single-flight ``auth``, POST only, redaction, one renewal after ``ERR 003`` --
this class only names its commands in the backend interface's terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from ...exceptions import CommandNotSent, InvalidMessage, SessionExpired
from ...protocol.encoding import encode_text
from ...protocol.replies import BalanceReply, MessageStatusReply
from ..client import ClickatellClient
from .base import (
    Backend,
    Capabilities,
    OutgoingSms,
    Refusal,
    SendResult,
    legacy_account_refusal,
)

if TYPE_CHECKING:
    from ...conf import ClickatellSettings

#: ``sendmsg`` options this API takes as they were stored.
_OPTIONS = ("deliv_time", "scheduled_time", "callback", "concat", "validity")


class LegacyHttpBackend(Backend):
    """Accounts of Clickatell's "Developers' Central" with the HTTP API product."""

    name = "legacy_http"
    base_url_example = "the HTTP API's root, e.g. https://api.clickatell.com/http/"
    capabilities = Capabilities(
        remote_stop=True,
        sessions=True,
        native_scheduling=True,
        scheduling_horizon=timedelta(days=7),
        batch_size=1,
        callbacks="form",
        query_by_client_id=True,
    )

    def __init__(
        self,
        config: ClickatellSettings,
        *,
        alias: str = "default",
        client: ClickatellClient | None = None,
    ) -> None:
        super().__init__(config, alias=alias)
        self.client = client or ClickatellClient(config)

    def send(self, messages: Sequence[OutgoingSms]) -> list[SendResult]:
        if len(messages) != 1:
            # One message per sendmsg: each carries its own climsgid, verifiable on its own.
            raise InvalidMessage("The HTTP API backend sends one message per request.")
        self._turn("sendmsg")
        with self.failures("sendmsg"):
            return list(self.client.sendmsg(sendmsg_fields(messages[0])))

    def query(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        self._turn("querymsg")
        with self.failures("querymsg"):
            return self.client.querymsg(apimsgid=apimsgid, climsgid=climsgid)

    def stop(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        self._turn("delmsg")
        with self.failures("delmsg"):
            return self.client.delmsg(apimsgid=apimsgid, climsgid=climsgid)

    def balance(self) -> BalanceReply:
        self._turn("getbalance")
        with self.failures("getbalance"):
            return self.client.getbalance()

    def check_credentials(self) -> None:
        self._turn("auth")
        with self.failures("auth"):
            self.client.auth()

    def keep_alive(self) -> None:
        self._turn("ping")
        with self.failures("ping"):
            self.client.ping()

    def _turn(self, command: str) -> None:
        """Wait for the account's throttle; a call given up here made no request at all."""
        try:
            self.throttle.acquire(command)
        except CommandNotSent:
            self.client.forget_refused_attempts()
            raise

    @property
    def refused_attempts(self) -> list[SessionExpired]:
        return self.client.refused_attempts

    def refused_credentials(self, code: int | None) -> Refusal:
        """The HTTP API's codes tell a wrong login from a frozen account or an IP lockdown."""
        if code == 108:
            return "its API_ID was refused", ("API_ID",), ""
        if code == 2:
            return "its login was refused", ("USERNAME", "PASSWORD"), ""
        return legacy_account_refusal(code) or (
            "its login was refused",
            ("USERNAME", "PASSWORD", "API_ID"),
            "",
        )

    @property
    def username(self) -> str:
        return self.client.username

    @property
    def api_id(self) -> str:
        return self.client.api_id


def sendmsg_fields(message: OutgoingSms) -> dict[str, str]:
    """The ``sendmsg`` form of one message (text encoded: GSM 03.38, else UCS-2 hex)."""
    fields = {"to": message.to, "climsgid": message.climsgid, **encode_text(message.text).fields()}
    if message.sender:
        fields["from"] = message.sender
    for key, value in message.options.items():
        if key in _OPTIONS:
            fields[key] = str(value)
    return fields
