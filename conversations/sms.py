"""SMS encoding and segment count (GSM-7 vs UCS-2), for keeping texts short."""
from __future__ import annotations

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")


def encoding(text: str) -> str:
    return "GSM-7" if all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text) else "UCS-2"


def segments(text: str) -> int:
    if encoding(text) == "GSM-7":
        units = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
        return 1 if units <= 160 else -(-units // 153)
    units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)  # UTF-16 code units
    return 1 if units <= 70 else -(-units // 67)
