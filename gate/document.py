"""Document data from the reader: the MRZ (ICAO Doc 9303), parsed and checked on the gate.

Input is the machine-readable zone as the document reader delivers it: two lines of 44
characters (TD3, passports; Doc 9303 part 4), three of 30 (TD1, ID cards; part 5) or
two of 36 (TD2; part 6); characters ``A-Z 0-9 <``; blank lines and surrounding spaces
are ignored, lower case is refused (a reader never sends it). Every check digit is
verified (document number, birth date, expiry date, optional data where the format has
one, and the composite), then the expiry; any failure raises
:class:`~gate.errors.InvalidDocumentError` and the lane refuses the traveller without
sending anything.

Why not the ``mrz`` package from PyPI: it is GPLv3 (veilmatch is Apache-2.0 and the
gate imports its parser into the agent's process) and unreleased since 2020. Check
digits and field positions are a short, fixed part of Doc 9303 (part 3 §4.9: weights
7, 3, 1; ``<`` = 0, ``A`` … ``Z`` = 10 … 35), tested here against the specimens printed
in Doc 9303 and against single-character mutations of them.

The document number is needed for one thing, the keyed pseudonym
(``GateState.pseudonym``); :class:`Document` keeps it out of its ``repr`` and messages
name the failed check only, never a field's value.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from gate.errors import InvalidDocumentError

__all__ = ["Document", "check_digit", "parse_mrz"]

_CHARS = re.compile(r"[A-Z0-9<]+")
_WEIGHTS = (7, 3, 1)
_MAX_INPUT = 512


def check_digit(data: str) -> str:
    """The Doc 9303 part 3 §4.9 check digit of ``data`` (``[A-Z0-9<]*``)."""
    total = 0
    for i, char in enumerate(data):
        value = int(char) if char.isdigit() else 0 if char == "<" else ord(char) - 55
        total += value * _WEIGHTS[i % 3]
    return str(total % 10)


@dataclass(frozen=True)
class Document:
    """A checked MRZ. ``number`` (fillers removed) is private to the gate."""

    format: str
    document_type: str
    issuing_state: str
    nationality: str
    expiry: dt.date
    number: str = field(repr=False)


@dataclass(frozen=True)
class _Fields:
    """Positions of one format: (what, data, its check digit) triples and the fields."""

    checks: tuple[tuple[str, str, str], ...]
    document_type: str
    issuing_state: str
    nationality: str
    number: str
    expiry: str


def _td3(l1: str, l2: str) -> _Fields:
    optional_check = l2[42]
    checks = [
        ("document number", l2[0:9], l2[9]),
        ("birth date", l2[13:19], l2[19]),
        ("expiry date", l2[21:27], l2[27]),
        ("composite", l2[0:10] + l2[13:20] + l2[21:43], l2[43]),
    ]
    # An unused personal number may carry '<' as its check digit (part 4 §4.2.2.2).
    if not (optional_check == "<" and set(l2[28:42]) == {"<"}):
        checks.append(("personal number", l2[28:42], optional_check))
    return _Fields(tuple(checks), l1[0:2], l1[2:5], l2[10:13], l2[0:9], l2[21:27])


def _td2(l1: str, l2: str) -> _Fields:
    checks = (
        ("document number", l2[0:9], l2[9]),
        ("birth date", l2[13:19], l2[19]),
        ("expiry date", l2[21:27], l2[27]),
        ("composite", l2[0:10] + l2[13:20] + l2[21:35], l2[35]),
    )
    return _Fields(checks, l1[0:2], l1[2:5], l2[10:13], l2[0:9], l2[21:27])


def _td1(l1: str, l2: str, _l3: str) -> _Fields:
    number, number_check = l1[5:14], l1[14]
    if number_check == "<":
        # A number longer than 9 characters continues in the optional data and ends
        # with its check digit (part 5 §4.2.4, note j).
        rest = l1[15:30].split("<", 1)[0]
        if len(rest) < 2:
            raise InvalidDocumentError("TD1 MRZ long document number is malformed")
        number, number_check = number + rest[:-1], rest[-1]
    checks = (
        ("document number", number, number_check),
        ("birth date", l2[0:6], l2[6]),
        ("expiry date", l2[8:14], l2[14]),
        ("composite", l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29], l2[29]),
    )
    return _Fields(checks, l1[0:2], l1[2:5], l2[15:18], number, l2[8:14])


_FORMATS: dict[tuple[int, int], tuple[str, Callable[..., _Fields]]] = {
    (2, 44): ("TD3", _td3),
    (3, 30): ("TD1", _td1),
    (2, 36): ("TD2", _td2),
}


def _expiry(yymmdd: str, today: dt.date) -> dt.date:
    """YYMMDD in the century that puts it at most 50 years ahead of ``today`` (Doc 9303
    leaves the century to the reader; a document is valid for at most ten years)."""
    if not yymmdd.isdigit():
        raise ValueError("not digits")
    year = today.year // 100 * 100 + int(yymmdd[:2])
    if year > today.year + 50:
        year -= 100
    return dt.date(year, int(yymmdd[2:4]), int(yymmdd[4:6]))


def parse_mrz(text: str, *, today: dt.date | None = None) -> Document:
    """Parse and check an MRZ (see the module docstring); ``today`` is injectable."""
    today = today or dt.datetime.now(dt.UTC).date()
    if len(text) > _MAX_INPUT:
        raise InvalidDocumentError("MRZ input is too long")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    shape = (len(lines), len(lines[0]) if lines else 0)
    if shape not in _FORMATS or any(len(line) != shape[1] for line in lines):
        raise InvalidDocumentError("MRZ is not 2×44, 3×30 or 2×36 characters")
    if not all(_CHARS.fullmatch(line) for line in lines):
        raise InvalidDocumentError("MRZ has characters outside A-Z, 0-9 and <")
    name, layout = _FORMATS[shape]
    fields = layout(*lines)
    failed = [what for what, data, digit in fields.checks if check_digit(data) != digit]
    if failed:
        raise InvalidDocumentError(f"{name} MRZ check digit wrong: {', '.join(failed)}")
    try:
        expiry = _expiry(fields.expiry, today)
    except ValueError:
        raise InvalidDocumentError(f"{name} MRZ expiry date is not a date") from None
    if expiry < today:
        raise InvalidDocumentError("the document has expired")
    return Document(
        format=name,
        document_type=fields.document_type.rstrip("<"),
        issuing_state=fields.issuing_state.rstrip("<"),
        nationality=fields.nationality.rstrip("<"),
        expiry=expiry,
        number=fields.number.replace("<", ""),
    )
