"""GSTIN format and check character (zpctl.model.gstin)."""

from __future__ import annotations

import pytest

from zpctl.model.gstin import _ALPHABET, check_char, gstin_problem

VALID = "27AABCP5678K1ZV"  # the india-mini fixture's GSTIN: Maharashtra (27)


def test_valid_gstin_is_accepted() -> None:
    assert gstin_problem(VALID) is None
    assert check_char(VALID[:14]) == VALID[14]


def test_widely_published_example() -> None:
    # The sample GSTIN used in GST documentation and tutorials.
    assert check_char("27AAPFU0939F1Z") == "V"
    assert gstin_problem("27AAPFU0939F1ZV") is None


@pytest.mark.parametrize("wrong", [c for c in _ALPHABET if c != VALID[14]])
def test_every_other_check_character_is_rejected(wrong: str) -> None:
    assert gstin_problem(VALID[:14] + wrong) == \
        f"GSTIN check character is {wrong!r}, expected {VALID[14]!r}"


def test_every_single_substitution_in_the_body_changes_the_check_character() -> None:
    # Luhn mod 36 detects every single-character error: no substitution in the first 14
    # characters keeps the same check character.
    for i in range(14):
        for c in _ALPHABET:
            if c != VALID[i]:
                assert check_char(VALID[:i] + c + VALID[i + 1:14]) != VALID[14], (i, c)


@pytest.mark.parametrize("gstin", [VALID[:14], VALID + "1", "", VALID[:10]])
def test_wrong_length(gstin: str) -> None:
    assert gstin_problem(gstin) == f"GSTIN must be 15 characters, got {len(gstin)}"


@pytest.mark.parametrize(("gstin", "why"), [
    ("2AAABCP5678K1ZV", "state code not two digits"),
    ("27AABC05678K1ZV", "digit among the PAN's five letters"),
    ("27AABCPX678K1ZV", "letter among the PAN's four digits"),
    ("27AABCP567891ZV", "PAN not ending in a letter"),
    ("27AABCP5678K0ZV", "entity number 0"),
    ("27AABCP5678K1YV", "14th character not Z"),
    ("27aabcp5678k1zv", "lower case"),
    ("27AABCP5678K1Z-", "check character not alphanumeric"),
])
def test_wrong_shape(gstin: str, why: str) -> None:
    problem = gstin_problem(gstin)
    assert problem is not None, why
    assert problem.startswith("GSTIN must be state code"), why
