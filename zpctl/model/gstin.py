"""GSTIN (Goods and Services Tax Identification Number) format and checksum.

A GSTIN is 15 characters: a two-digit state code, the holder's 10-character PAN (five
letters, four digits, one letter), an entity number (1-9 or A-Z), the letter Z, and a check
character.  The check character is a mod-36 Luhn variant over the first 14 characters with
the alphabet 0-9A-Z and weights alternating 1, 2.
"""

from __future__ import annotations

import re

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SHAPE = re.compile(r"^[0-9]{2}[A-Z]{5}[0-9]{4}[A-Z][1-9A-Z]Z[0-9A-Z]$")


def check_char(first14: str) -> str:
    """The check character for the first 14 characters of a GSTIN."""
    total = 0
    for i, ch in enumerate(first14):
        product = _ALPHABET.index(ch) * (2 if i % 2 else 1)
        total += product // 36 + product % 36
    return _ALPHABET[(36 - total % 36) % 36]


def gstin_problem(gstin: str) -> str | None:
    """Why ``gstin`` is not a valid GSTIN, or None when it is."""
    if len(gstin) != 15:
        return f"GSTIN must be 15 characters, got {len(gstin)}"
    if not _SHAPE.match(gstin):
        return "GSTIN must be state code (2 digits), PAN (5 letters, 4 digits, 1 letter), " \
               "entity number, 'Z' and a check character"
    expected = check_char(gstin[:14])
    if gstin[14] != expected:
        return f"GSTIN check character is {gstin[14]!r}, expected {expected!r}"
    return None
