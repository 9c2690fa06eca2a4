"""Every reply shape in the reference, parsed without I/O."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from django_clickatell.exceptions import (
    AuthenticationError,
    GatewayBusy,
    GatewayError,
    ProtocolError,
    SessionExpired,
    UnknownMessage,
)
from django_clickatell.protocol import codes, replies
from django_clickatell.protocol.redaction import REDACTED, Secret, excerpt, redact

SID = "f6b9af2a2c9e5b18ee2d257e3def5d66"


class TestAuthAndPing:
    def test_auth_ok(self) -> None:
        assert replies.parse_auth(f"OK: {SID}").session_id == SID

    def test_auth_reply_repr_hides_session_id(self) -> None:
        assert SID not in repr(replies.parse_auth(f"OK: {SID}"))

    def test_auth_error(self) -> None:
        with pytest.raises(AuthenticationError) as info:
            replies.parse_auth("ERR: 001, Authentication failed")
        assert info.value.code == 1
        assert info.value.description == "Authentication failed"
        assert str(info.value) == "Clickatell auth answered ERR 001: Authentication failed"

    @pytest.mark.parametrize("body", ["OK:", "OK: ", f"OK: {SID}", "OK:\n", "ok: "])
    def test_ping_variants(self, body: str) -> None:
        assert replies.parse_ping(body) == replies.PingReply()

    @pytest.mark.parametrize("body", ["OK", f"OK: {SID} extra", "", "ID: x"])
    def test_ping_malformed(self, body: str) -> None:
        with pytest.raises(ProtocolError):
            replies.parse_ping(body)

    @pytest.mark.parametrize("body", ["OK:", "OK: short", "OK: not-hex!"])
    def test_auth_without_usable_session_id(self, body: str) -> None:
        with pytest.raises(ProtocolError):
            replies.parse_auth(body)


class TestMessageStatus:
    def test_delmsg_stopped(self) -> None:
        reply = replies.parse_message_status(f"ID: {SID} Status: 006")
        assert reply == replies.MessageStatusReply(SID, "006")
        assert reply.final
        assert reply.description == "User cancelled message delivery"

    def test_unpadded_status_normalised(self) -> None:
        assert replies.parse_message_status(f"ID: {SID} Status: 4").status == "004"

    def test_unknown_status_kept(self) -> None:
        reply = replies.parse_message_status(f"ID: {SID} Status: 042")
        assert reply.status == "042"
        assert not reply.final
        assert "042" in reply.description

    def test_crlf_and_trailing_newline(self) -> None:
        assert replies.parse_message_status(f"ID: {SID} Status: 006\r\n").status == "006"

    def test_key_without_space(self) -> None:
        assert replies.parse_message_status(f"ID:{SID} Status:006").status == "006"

    @pytest.mark.parametrize(
        ("body", "error"),
        [
            ("ERR: 103, Unknown API message ID", UnknownMessage),
            ("ERR: 104, Unknown client message ID", UnknownMessage),
            ("ERR: 003, Session ID expired", SessionExpired),
            ("ERR: 5, Missing session ID", SessionExpired),
            ("ERR: 007, IP Lockdown violation", AuthenticationError),
            ("ERR: 108, Invalid or missing API ID", AuthenticationError),
            ("ERR: 901, Internal error (please retry)", GatewayBusy),
            ("ERR: 109, Missing message ID", GatewayError),
        ],
    )
    def test_errors(self, body: str, error: type[GatewayError]) -> None:
        with pytest.raises(error) as info:
            replies.parse_message_status(body)
        assert type(info.value) is error

    def test_error_without_code(self) -> None:
        with pytest.raises(GatewayError) as info:
            replies.parse_message_status("ERR: Authentication failed")
        assert info.value.code is None
        assert info.value.description == "Authentication failed"
        assert "ERR ---" in str(info.value)

    def test_error_code_only_gets_table_description(self) -> None:
        with pytest.raises(UnknownMessage) as info:
            replies.parse_message_status("ERR: 103")
        assert info.value.description == "Unknown API message ID"

    def test_unpadded_error_code(self) -> None:
        with pytest.raises(AuthenticationError) as info:
            replies.parse_auth("ERR: 1, Auth fail")
        assert info.value.code == 1
        assert info.value.description == "Auth fail"

    @pytest.mark.parametrize(
        "body",
        [
            "",
            "\n\n",
            f"ID: {SID}",
            "Status: 006",
            f"ID: {SID} Status: six",
            f"ID: {SID} Status: 006 Extra: 1",
            f"ID: {SID} Status: 006\nID: {SID} Status: 006",
            "<html><body>502 Bad Gateway</body></html>",
            f"ID: {SID} ID: {SID} Status: 006",
            "ID: bad/id Status: 006",
        ],
    )
    def test_malformed(self, body: str) -> None:
        with pytest.raises(ProtocolError) as info:
            replies.parse_message_status(body)
        assert info.value.command == "delmsg"


class TestSendmsg:
    def test_single(self) -> None:
        assert replies.parse_send(f"ID: {SID}") == [replies.SentMessageReply(SID)]

    def test_multi_mixed(self) -> None:
        body = (
            f"ID: {SID} To: 27999000001\n"
            "ERR: 105, Invalid destination address To: 2799x\n"
            "ERR: 121, Destination mobile number blocked To: 27999000003\n"
            "ID: 0123456789abcdef0123456789abcdef To: 27999000004\n"
        )
        with pytest.raises(ProtocolError):  # "2799x" is not a phone number
            replies.parse_send(body)
        body = body.replace("2799x", "27999000002")
        result = replies.parse_send(body)
        assert result == [
            replies.SentMessageReply(SID, "27999000001"),
            replies.ErrorReply(105, "Invalid destination address", "27999000002"),
            replies.ErrorReply(121, "Destination mobile number blocked", "27999000003"),
            replies.SentMessageReply("0123456789abcdef0123456789abcdef", "27999000004"),
        ]

    def test_whole_request_error_raises(self) -> None:
        with pytest.raises(GatewayError) as info:
            replies.parse_send("ERR: 107, Empty message")
        assert info.value.code == 107

    def test_mt_limit_description_kept(self) -> None:
        with pytest.raises(GatewayError) as info:
            replies.parse_send("ERR: 130, Maximum MT limit exceeded until 1767225600")
        assert info.value.description == "Maximum MT limit exceeded until 1767225600"

    def test_several_lines_need_recipients(self) -> None:
        with pytest.raises(ProtocolError):
            replies.parse_send(f"ID: {SID}\nID: {SID}")


class TestErrLine:
    """The ``ERR`` grammar, read by splitting (the old regex backtracked quadratically)."""

    @pytest.mark.parametrize(
        ("line", "expected"),
        [
            ("ERR: 001, Authentication failed", (1, "Authentication failed", None)),
            ("ERR: 1, Auth fail", (1, "Auth fail", None)),
            ("ERR:001,Authentication failed", (1, "Authentication failed", None)),
            ("ERR: 001 , x", (1, "x", None)),
            ("ERR: 103", (103, "", None)),
            ("ERR: Authentication failed", (None, "Authentication failed", None)),
            ("ERR: , x", (None, "x", None)),
            ("ERR: 1234567, x", (None, "1234567, x", None)),  # seven digits: not a code
            ("ERR: 1.5 x", (None, "1.5 x", None)),
            ("ERR: 12abc", (12, "abc", None)),
            ("ERR: ٣, x", (None, "٣, x", None)),  # only ASCII digits make a code
            ("ERR: 105, Invalid To: 27999000002", (105, "Invalid", "27999000002")),
            ("ERR: 105, Invalid To:27999000002", (105, "Invalid", "27999000002")),
            ("ERR: 105, Invalid\t To: \t+27999000002", (105, "Invalid", "+27999000002")),
            ("ERR: 105, To: 27999000002", (105, "", "27999000002")),
            ("ERR: 105 To: 27999000002", (105, "", "27999000002")),
            ("ERR: 105,To: 27999000002", (105, "To: 27999000002", None)),
            ("ERR:To:27999000002", (None, "To:27999000002", None)),
            ("ERR: a To: 111 To: 27999000002", (None, "a To: 111", "27999000002")),
            ("ERR: 105, Invalid To:", (105, "Invalid To:", None)),
            ("ERR: 105, Invalid  \t  spacing", (105, "Invalid spacing", None)),
        ],
    )
    def test_grammar(self, line: str, expected: tuple[int | None, str, str | None]) -> None:
        reply = replies._parse_error(line, ())
        assert (reply.code, reply.description, reply.to) == expected

    @pytest.mark.parametrize("line", ["ERR: 105, x To: 2799x", "ERR: 105, x To: 12"])
    def test_unreadable_recipient(self, line: str) -> None:
        with pytest.raises(ProtocolError, match="unreadable recipient"):
            replies.parse_send(f"ID: {SID} To: 27999000001\n{line}")


class TestBalanceAndCharge:
    def test_balance(self) -> None:
        assert replies.parse_balance("Credit: 1234.5") == replies.BalanceReply(Decimal("1234.5"))

    @pytest.mark.parametrize(
        "body",
        [
            "Credit: lots",
            "Credit: NaN",
            "Credit:",
            "Balance: 3",
            "Credit: 1E+999999999",
            "Credit: 1_000",
            "Credit: ١٢",
            "Credit: " + "9" * 10_000,
        ],
    )
    def test_balance_malformed(self, body: str) -> None:
        with pytest.raises(ProtocolError):
            replies.parse_balance(body)

    @pytest.mark.parametrize("credit", ["0", "-12.5", "+3", ".5", "12.", "123456789012345678.25"])
    def test_balance_plain_decimals(self, credit: str) -> None:
        assert replies.parse_balance(f"Credit: {credit}").credit == Decimal(credit)

    def test_charge_lower_case_keys(self) -> None:
        reply = replies.parse_charge(f"apiMsgId: {SID} charge: 0.300000 status: 004")
        assert reply == replies.ChargeReply(SID, Decimal("0.300000"), "004")


class TestCodes:
    def test_tables_complete(self) -> None:
        assert sorted(codes.STATUSES) == [f"{n:03d}" for n in (*range(1, 13), 14)]
        assert {"004", "005", "006", "007", "009", "010", "012", "014"} == codes.FINAL_STATUSES
        assert len(codes.ERRORS) == 34

    def test_unknown_error_described(self) -> None:
        info = codes.describe_error(999)
        assert not info.known
        assert "999" in str(info.label)

    @pytest.mark.parametrize("code", ["", "x", "-1", "1.0", "٣"])
    def test_normalize_rejects(self, code: str) -> None:
        with pytest.raises(ValueError, match="digits"):
            codes.normalize_status(code)

    def test_normalize_rejects_codes_too_long_to_keep(self) -> None:
        assert codes.normalize_status("12345678") == "12345678"
        with pytest.raises(ValueError, match="too long"):
            codes.normalize_status("9" * 400)

    def test_choices_cover_table(self) -> None:
        assert [code for code, _ in codes.status_choices()] == list(codes.STATUSES)


class TestRedaction:
    def test_secret_never_shows(self) -> None:
        secret = Secret("hunter2-password")
        assert "hunter2" not in repr(secret)
        assert "hunter2" not in str(secret)
        assert "hunter2" not in f"{secret}"
        assert secret.reveal() == "hunter2-password"

    def test_secret_cannot_be_pickled(self) -> None:
        import pickle

        with pytest.raises(TypeError):
            pickle.dumps(Secret("x" * 8))

    def test_redact_known_and_shaped(self) -> None:
        text = f"password=hunter2 session_id={SID} OK: {SID} hunter2"
        clean = redact(text, [Secret("hunter2")])
        assert "hunter2" not in clean
        assert SID not in clean
        assert clean.count(REDACTED) == 4

    def test_excerpt_short_and_printable(self) -> None:
        text = excerpt("\x00\x1b" + "a" * 500)
        assert len(text) == 120
        assert "\\x00" in text

    def test_protocol_error_excerpt_redacted(self) -> None:
        with pytest.raises(ProtocolError) as info:
            replies.parse_auth(f"OK: {SID} trailing", secrets=["hunter2pw"])
        assert SID not in str(info.value)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_fuzz_parsers_return_or_raise_typed(body: str | bytes) -> None:
    parsers: list[Callable[[str | bytes], object]] = [
        replies.parse_auth,
        replies.parse_ping,
        replies.parse_message_status,
        replies.parse_balance,
        replies.parse_charge,
        replies.parse_send,
    ]
    for parse in parsers:
        with contextlib.suppress(GatewayError, ProtocolError):
            parse(body)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["ID", "id", "Status", "OK", "ERR", "To", "Credit", "charge"]).flatmap(
        lambda key: st.lists(
            st.tuples(st.just(key), st.text(alphabet="0123456789abcdefXYZ,:. ", max_size=12)),
            max_size=4,
        )
    )
)
def test_fuzz_field_soup(pairs: list[tuple[str, str]]) -> None:
    body = " ".join(f"{key}: {value}" for key, value in pairs)
    for parse in (replies.parse_message_status, replies.parse_send, replies.parse_auth):
        with contextlib.suppress(GatewayError, ProtocolError):
            parse(body)
