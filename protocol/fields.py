"""Field-level checkers for records (PROTOCOL.md section 3.2).

A checker is a function ``check(value)`` that returns ``None`` when the value
is acceptable and otherwise raises ``Rejected(why)``. The small combinators at
the end (``obj``, ``list_of``) build whole record shapes from them and
``check_object`` turns a ``Rejected`` into ``InvalidRecord(path, why)``;
``protocol.records`` holds the shapes.

Paths are built only on the way out of a failure: each object or list level
that a ``Rejected`` passes through adds its member name or index. Every record
received is validated, and formatting a path for each of its ~25 members cost
more than the checks themselves.

Every checker tests the Python type before anything else, so input of any
shape, including values that are not JSON at all, can only ever end in
``InvalidRecord``. Error texts never ``repr`` an arbitrary value (a deeply
nested list would overflow the stack, a huge integer exceeds Python's
int-to-str limit); they go through ``show``.
"""

from __future__ import annotations

import datetime
import operator
import re
import string
from collections.abc import Callable, Collection, Mapping
from typing import Any

import pycountry

from protocol.errors import InvalidRecord

Check = Callable[[Any], None]
Field = tuple[bool, Check]
"""A field of an object shape: (required, checker)."""

MAX_SAFE_INT = 2**53 - 1


class Rejected(Exception):
    """A checker's verdict on a value: ``why``, and where, relative to the checked value.

    ``steps`` lists the path steps (``.name`` or ``[i]``) innermost first; each
    containing object or list appends its own as the error passes through.
    """

    def __init__(self, why: str, *steps: str) -> None:
        super().__init__(why)
        self.why = why
        self.steps = list(steps)

    def path(self, prefix: str) -> str:
        """The dotted path below ``prefix`` ("" for the record itself)."""
        path = prefix + "".join(reversed(self.steps))
        return path[1:] if path.startswith(".") else path


# Read pycountry's data once, at import, so validation itself does no file I/O
# and the lookups are exact: pycountry.*.get() would also match lower case.
_COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries) | {"XK"}  # customs use XK (Kosovo)
_CURRENCIES = frozenset(c.alpha_3 for c in pycountry.currencies)

# C0 and C1 controls except \t and \n, and lone surrogates (they cannot be
# encoded to UTF-8, so the record could never be sealed).
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# Explicit [0-9], never \d: \d also matches non-ASCII digits such as "٣".
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,14})(\.[0-9]{1,4})?")
_NON_ZERO_DIGIT = re.compile(r"[1-9]")
_LOCODE = re.compile(r"([A-Z]{2})[A-Z2-9]{3}")
_HS_CODE = re.compile(r"[0-9]{6,10}")
_CONTAINER = re.compile(r"[A-Z]{3}[UJZ][0-9]{7}")
_AWB = re.compile(r"[0-9]{11}")
_BILL_OF_LADING = re.compile(r"[A-Z0-9]{1,35}")
_IMO = re.compile(r"(?:IMO)?([0-9]{7})")
_FLIGHT = re.compile(r"[A-Z0-9]{2}[0-9]{1,4}[A-Z]?")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _iso6346_values() -> dict[str, int]:
    # ISO 6346 numbers letters from 10 upwards but skips 11, 22 and 33, so
    # that no letter is worth a multiple of the modulus; digits are worth themselves.
    values = {d: int(d) for d in string.digits}
    n = 10
    for letter in string.ascii_uppercase:
        if n % 11 == 0:
            n += 1
        values[letter] = n
        n += 1
    return values


# The check digit is sum(value(c) * 2**i) over the first 10 characters. A
# translation table turns the (ASCII) number into its character values in one
# C call, and map(mul) weighs them: ~4x faster than a comprehension.
_ISO6346_VALUES = _iso6346_values()
_ISO6346_TABLE = bytes.maketrans(
    "".join(_ISO6346_VALUES).encode("ascii"), bytes(_ISO6346_VALUES.values())
)
_ISO6346_WEIGHTS = tuple(1 << i for i in range(10))


# --- Messages ---------------------------------------------------------------


def show(value: object) -> str:
    """A short, always-safe rendering of ``value`` for an error message."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    if isinstance(value, bool) or value is None:
        return "true" if value is True else "false" if value is False else "null"
    if isinstance(value, int):
        # str() of a huge int raises ValueError past 4300 digits.
        return str(value) if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else "a huge integer"
    name = type_name(value)
    return f"an {name}" if name[:1] in ("a", "e", "i", "o", "u") else f"a {name}"


def type_name(value: object) -> str:
    """The JSON name of ``value``'s type, for "must be ..." messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def join(path: str, name: str) -> str:
    """``path`` extended by the object member ``name``."""
    return f"{path}.{name}" if path else name


def _string(value: object) -> str:
    # The hot checkers test isinstance inline and call this only to word the error.
    if not isinstance(value, str):
        raise Rejected(f"must be a string, not {type_name(value)}")
    return value


# --- Scalars ----------------------------------------------------------------


def text(max_len: int, *, min_len: int = 0) -> Check:
    """Free text of ``min_len`` to ``max_len`` characters; tab and newline are the only controls."""
    find_forbidden = _FORBIDDEN_CHARS.search

    def check(value: Any) -> None:
        if not isinstance(value, str):
            raise Rejected(f"must be a string, not {type_name(value)}")
        if not min_len <= len(value) <= max_len:
            if len(value) < min_len:
                raise Rejected(
                    "must not be empty" if min_len == 1 else f"is shorter than {min_len} characters"
                )
            raise Rejected(f"is longer than {max_len} characters ({len(value)})")
        bad = find_forbidden(value)
        if bad:
            raise Rejected(
                f"contains the control character U+{ord(bad.group()):04X} at position {bad.start()}"
            )

    return check


def enum(values: tuple[str, ...]) -> Check:
    """One of ``values``, compared exactly (case matters)."""
    allowed = frozenset(values)

    def check(value: Any) -> None:
        if not isinstance(value, str) or value not in allowed:
            _string(value)
            raise Rejected(f"{show(value)} is not one of {', '.join(values)}")

    return check


def integer(low: int, high: int) -> Check:
    """An integer from ``low`` to ``high``; booleans are refused although Python counts them as int."""

    def check(value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Rejected(f"must be an integer, not {type_name(value)}")
        if not low <= value <= high:
            raise Rejected(f"{show(value)} is outside {low}..{high}")

    return check


def pattern(regex: re.Pattern[str], what: str) -> Check:
    """A string matching ``regex`` in full; ``what`` names the format in the message."""
    fullmatch = regex.fullmatch

    def check(value: Any) -> None:
        if not isinstance(value, str) or not fullmatch(value):
            _string(value)
            raise Rejected(f"{show(value)} is not {what}")

    return check


uuid = pattern(_UUID, "a UUID in lower-case 8-4-4-4-12 hex form")
hs_code = pattern(_HS_CODE, "an HS code of 6 to 10 digits")
bill_of_lading = pattern(_BILL_OF_LADING, "a bill of lading number (1 to 35 of A-Z, 0-9)")
flight = pattern(_FLIGHT, "an IATA flight number such as 'LH400' or 'U21234A'")


def country(value: Any) -> None:
    """An ISO 3166-1 alpha-2 country code (or XK, Kosovo)."""
    if not isinstance(value, str) or value not in _COUNTRIES:
        _string(value)
        raise Rejected(f"{show(value)} is not an ISO 3166 country code")


def currency(value: Any) -> None:
    """An ISO 4217 alphabetic currency code."""
    if not isinstance(value, str) or value not in _CURRENCIES:
        _string(value)
        raise Rejected(f"{show(value)} is not an ISO 4217 currency code")


def locode(value: Any) -> None:
    """A UN/LOCODE written ``CCLLL``: a known country, then 3 of A-Z and 2-9."""
    match = _LOCODE.fullmatch(_string(value))
    if not match:
        raise Rejected(f"{show(value)} is not a UN/LOCODE (5 characters, CCLLL)")
    if match.group(1) not in _COUNTRIES:
        raise Rejected(f"{show(value)} does not start with an ISO 3166 country code")


def decimal(*, positive: bool) -> Check:
    """A decimal string such as ``"1250.50"``: no sign, no exponent, at most 4 decimals."""

    def check(value: Any) -> None:
        s = _string(value)
        if not _DECIMAL.fullmatch(s):
            raise Rejected(f"{show(value)} is not a decimal string such as '1250.50'")
        if positive and not _NON_ZERO_DIGIT.search(s):
            raise Rejected("must be greater than zero")

    return check


def _date(value: Any) -> datetime.date:
    # Not date.fromisoformat alone: from Python 3.11 it also takes "20200324" and
    # week dates. Once the pattern holds, it reads exactly YYYY-MM-DD, in C.
    if not _DATE.fullmatch(_string(value)):
        raise Rejected(f"{show(value)} is not an ISO date YYYY-MM-DD")
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise Rejected(f"{show(value)} is not a real calendar date") from None


def date(value: Any) -> None:
    """An ISO ``YYYY-MM-DD`` calendar date, at any time."""
    _date(value)


def date_not_after(today: datetime.date) -> Check:
    """An ISO calendar date that is ``today`` or earlier."""

    def check(value: Any) -> None:
        if _date(value) > today:
            raise Rejected(f"{show(value)} is in the future (today is {today.isoformat()})")

    return check


# --- Transport references with check digits ---------------------------------


def container(value: Any) -> None:
    """An ISO 6346 container number such as ``CSQU3054383`` whose check digit is right."""
    s = _string(value)
    if not _CONTAINER.fullmatch(s):
        raise Rejected(f"{show(value)} is not an ISO 6346 container number (AAAU1234567)")
    expected = _iso6346_digit(s)
    if int(s[10]) != expected:
        raise Rejected(f"{show(value)} has a wrong check digit (expected {expected})")


def _iso6346_digit(s: str) -> int:
    """The check digit of a string that matches _CONTAINER (so it is ASCII)."""
    values = s.encode("ascii").translate(_ISO6346_TABLE)
    total: int = sum(map(operator.mul, values, _ISO6346_WEIGHTS))  # map stops at 10
    return total % 11 % 10


def container_ok(value: str) -> bool:
    """``container(value)`` passes: for fast paths that only need the answer (no message)."""
    return _CONTAINER.fullmatch(value) is not None and _iso6346_digit(value) == ord(value[10]) - 48


def awb(value: Any) -> None:
    """An air waybill number: 11 digits, the last being the 7-digit serial mod 7."""
    # No hyphen after the airline prefix: one spelling per number keeps matching exact.
    s = _string(value)
    if not _AWB.fullmatch(s):
        raise Rejected(f"{show(value)} is not an air waybill number (11 digits, no hyphen)")
    expected = int(s[3:10]) % 7
    if int(s[10]) != expected:
        raise Rejected(f"{show(value)} has a wrong check digit (expected {expected})")


def vessel_imo(value: Any) -> None:
    """An IMO ship number, 7 digits optionally after ``IMO``, whose check digit is right."""
    match = _IMO.fullmatch(_string(value))
    if not match:
        raise Rejected(f"{show(value)} is not an IMO number (7 digits, optionally after 'IMO')")
    digits = [int(c) for c in match.group(1)]
    expected = sum(d * w for d, w in zip(digits, (7, 6, 5, 4, 3, 2), strict=False)) % 10
    if digits[6] != expected:
        raise Rejected(f"{show(value)} has a wrong check digit (expected {expected})")


# --- Combinators ------------------------------------------------------------


def required(check: Check) -> Field:
    """A member that must be present."""
    return (True, check)


def optional(check: Check) -> Field:
    """A member that may be left out (but not sent as null)."""
    return (False, check)


def check_object(
    value: Any, path: str, fields: Mapping[str, Field], *, non_empty: bool = False
) -> dict[str, Any]:
    """Check an object against ``fields``: no unknown members, required ones present.

    Unknown members are reported first, then members in the order of ``fields``,
    so the same bad record always yields the same error. Raises
    ``InvalidRecord(field, why)``; see ``check_record``.
    """
    return check_record(obj(fields, non_empty=non_empty), value, path)


def check_record(check: Check, value: Any, path: str = "") -> dict[str, Any]:
    """Run the object checker ``check`` (from ``obj``) on ``value`` and return ``value``.

    A failure becomes ``InvalidRecord(field, why)``, ``field`` being the path
    below ``path`` of the offending member, or ``path`` (``"record"`` at the
    top) when the object itself is at fault.
    """
    try:
        check(value)
    except Rejected as exc:
        raise InvalidRecord(exc.path(f".{path}" if path else "") or "record", exc.why) from None
    return value  # type: ignore[no-any-return]


def obj(fields: Mapping[str, Field], *, non_empty: bool = False) -> Check:
    """A nested object with the given members; ``non_empty`` asks for at least one."""
    checks = {name: check for name, (_, check) in fields.items()}
    known = checks.keys()
    required_names = frozenset(name for name, (is_required, _) in fields.items() if is_required)
    members = tuple((name, is_required, check) for name, (is_required, check) in fields.items())
    at_least_one = f"must have at least one of {', '.join(fields)}"

    def check_in_order(value: Any) -> None:
        # The reference check, and the one that words errors: unknown members
        # first, then the members in the order of ``fields``, so that the same
        # bad object always yields the same error.
        if not isinstance(value, dict):
            raise Rejected(f"must be an object, not {type_name(value)}")
        _reject_unknown(value, known)
        if non_empty and not value:
            raise Rejected(at_least_one)
        name = ""
        try:
            for name, is_required, check_member in members:
                if name in value:
                    check_member(value[name])
                elif is_required:
                    raise Rejected("is required")
        except Rejected as exc:
            exc.steps.append("." + name)
            raise

    def check(value: Any) -> None:
        # Fast pass for the common, valid object: set operations for the member
        # names, then only the members present (a shape lists many optional
        # ones). Whatever it does not accept, the reference check decides.
        if isinstance(value, dict) and required_names <= value.keys() <= known and (value or not non_empty):
            try:
                for name, member in value.items():
                    if type(name) is not str:
                        break  # a str subclass, or an object equal to a name: for the reference
                    checks[name](member)
                else:
                    return
            except Rejected:
                pass
        check_in_order(value)

    return check


def _reject_unknown(value: dict[Any, Any], known: Collection[str]) -> None:
    """Raise for the first member name of ``value`` (in order) that is not a known string."""
    for key in value:
        if not isinstance(key, str):
            raise Rejected(f"has a member name {show(key)} that is not a string")
        if key not in known:
            # Only a tame name goes into the path; an empty, huge or dotted one
            # would make the path itself misleading, so it is blamed on the parent.
            if _PLAIN_NAME.fullmatch(key):
                raise Rejected(f"unknown field {show(key)}", "." + key)
            raise Rejected(f"unknown field {show(key)}")


def list_of(
    item: Check,
    *,
    max_len: int,
    min_len: int = 0,
    unique: bool = False,
    ordered: bool = False,
) -> Check:
    """A list of ``min_len`` to ``max_len`` items.

    ``unique`` and ``ordered`` are for lists of strings: no item twice, and
    items in ascending code-point order (Python's ``sorted``).
    """

    def check(value: Any) -> None:
        if not isinstance(value, list):
            raise Rejected(f"must be a list, not {type_name(value)}")
        if len(value) < min_len:
            raise Rejected("must not be empty" if min_len == 1 else f"needs at least {min_len} entries")
        if len(value) > max_len:
            raise Rejected(f"has more than {max_len} entries ({len(value)})")
        for i, element in enumerate(value):
            try:
                item(element)
            except Rejected as exc:
                exc.steps.append(f"[{i}]")
                raise
        if unique or ordered:
            seen: set[str] = set()
            for i, element in enumerate(value):
                if unique and element in seen:
                    raise Rejected(f"{show(element)} is listed twice", f"[{i}]")
                if ordered and i and element < value[i - 1]:
                    raise Rejected(
                        f"{show(element)} is out of order (the list must be sorted)", f"[{i}]"
                    )
                seen.add(element)

    return check
