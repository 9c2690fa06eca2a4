"""Message text as ``sendmsg`` needs it: GSM 03.38 as is, anything else as UCS-2 hex.

Clickatell sends plain text in the GSM 7-bit alphabet; a text with any other
character must go with ``unicode=1`` and the text as hex-encoded UTF-16BE
(UCS-2), or accented and non-Latin letters arrive mangled.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: Characters sent with an escape, each counting as two septets.
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class EncodedText:
    text: str
    unicode: bool

    def fields(self) -> dict[str, str]:
        return {"text": self.text, "unicode": "1"} if self.unicode else {"text": self.text}


def fits_gsm(text: str) -> bool:
    return all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text)


def encode_text(text: str) -> EncodedText:
    """The ``text`` (and ``unicode``) fields for *text*."""
    if fits_gsm(text):
        return EncodedText(text, unicode=False)
    return EncodedText(text.encode("utf-16-be").hex().upper(), unicode=True)


def decode_ucs2_hex(value: str) -> str:
    """Inverse of the unicode encoding (the simulator uses it to check round trips)."""
    return bytes.fromhex(value).decode("utf-16-be")
