"""MRZ parsing and checks (``gate.document``) on the specimens printed in ICAO Doc 9303
and on single-character mutations of them (each must fail its named check)."""

from __future__ import annotations

import datetime as dt

import pytest

from gate.document import check_digit, parse_mrz
from gate.errors import InvalidDocumentError

TODAY = dt.date(2011, 1, 1)
# Doc 9303 part 4 appendix A (TD3 passport specimen)
TD3 = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7408122F1204159ZE184226B<<<<<10"
# Doc 9303 part 5 appendix A (TD1 card specimen)
TD1 = (
    "I<UTOD231458907<<<<<<<<<<<<<<<\n7408122F1204159UTO<<<<<<<<<<<6\nERIKSSON<<ANNA<MARIA<<<<<<<<<<"
)
# Doc 9303 part 6 appendix A (TD2 specimen)
TD2 = "I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<\nD231458907UTO7408122F1204159<<<<<<<6"


def test_check_digits_of_the_doc_9303_examples():
    # part 3 §4.9: "520727" → 3; "AB2134<<<" → 5
    assert check_digit("520727") == "3"
    assert check_digit("AB2134<<<") == "5"


@pytest.mark.parametrize(
    ("text", "fmt", "number"),
    [(TD3, "TD3", "L898902C3"), (TD1, "TD1", "D23145890"), (TD2, "TD2", "D23145890")],
)
def test_specimens_parse(text, fmt, number):
    doc = parse_mrz("  \n" + text + "\n\n", today=TODAY)
    assert (doc.format, doc.number, doc.issuing_state, doc.nationality) == (
        fmt,
        number,
        "UTO",
        "UTO",
    )
    assert doc.expiry == dt.date(2012, 4, 15)
    assert number not in repr(doc)


@pytest.mark.parametrize(
    ("position", "replacement", "check"),
    [
        (45, "M", "document number"),  # L898902C3 → M898902C3
        (45 + 9, "7", "document number"),
        (45 + 14, "9", "birth date"),
        (45 + 22, "3", "expiry date"),
        (45 + 30, "Y", "personal number"),
        (45 + 43, "1", "composite"),
    ],
)
def test_a_wrong_character_fails_its_check(position, replacement, check):
    text = TD3[:position] + replacement + TD3[position + 1 :]
    with pytest.raises(InvalidDocumentError, match=check) as err:
        parse_mrz(text, today=TODAY)
    assert "L898902C3" not in str(err.value) and "M898902C3" not in str(err.value)


def test_td1_long_document_number():
    # a 12-character number: 9 in the number field, '<', the rest + check digit after it
    number = "D23145890123"
    digit = check_digit(number)
    line1 = f"I<UTO{number[:9]}<{number[9:]}{digit}".ljust(30, "<")
    line2 = "7408122F1204159UTO<<<<<<<<<<<"
    line2 += check_digit(line1[5:30] + line2[0:7] + line2[8:15] + line2[18:29])
    doc = parse_mrz(f"{line1}\n{line2}\nERIKSSON<<ANNA<MARIA<<<<<<<<<<", today=TODAY)
    assert doc.number == number


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "2×44"),
        ("garbage", "2×44"),
        (TD3.lower(), "characters"),
        (TD3.replace("<<<<<10", "<<<<<1"), "2×44"),
        (TD3 + "\n" + "<" * 44, "2×44"),
        ("x" * 600, "too long"),
        (TD3.replace("L898902C3", "L898902C$"), "characters"),
    ],
)
def test_unreadable_input_is_refused(text, reason):
    with pytest.raises(InvalidDocumentError, match=reason):
        parse_mrz(text, today=TODAY)


def test_an_expired_document_is_refused():
    parse_mrz(TD3, today=dt.date(2012, 4, 15))  # valid through its expiry day
    with pytest.raises(InvalidDocumentError, match="expired"):
        parse_mrz(TD3, today=dt.date(2012, 4, 16))
