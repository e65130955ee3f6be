"""NHS number check digit (modulus 11), scalar and vectorised.

The NHS number is 10 digits; the tenth is a check digit: weights 10..2 on the first
nine digits, ``11 - (sum mod 11)``, 11 becomes 0 and 10 means the number is invalid
(NHS Data Dictionary, "NHS Number"). Spaces and hyphens are allowed as separators
(``943 476 5919``, ``943-476-5919``). Ten equal digits (``0000000000``, ``1111111111``
...) pass the modulus-11 check but are placeholders, never issued: they are invalid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, overload

import numpy as np
import pandas as pd

_SEPARATORS = re.compile(r"[\s-]")
_WEIGHTS = np.arange(10, 1, -1, dtype=np.int64)
ALL_EQUAL = tuple(str(d) * 10 for d in range(10))  # placeholders; every one passes modulus 11


def normalise_nhs_number(value: object) -> str | None:
    """Return the 10 characters without separators, or ``None`` for a missing value."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return _SEPARATORS.sub("", str(value))


def _valid_scalar(value: object) -> bool:
    s = normalise_nhs_number(value)
    if s is None or len(s) != 10 or not s.isascii() or not s.isdigit() or s in ALL_EQUAL:
        return False
    digits = np.frombuffer(s.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    check = 11 - int(digits[:9] @ _WEIGHTS) % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


def _valid_vector(values: Iterable[Any]) -> np.ndarray:
    norm = [normalise_nhs_number(v) for v in values]
    good = [v for v in norm if v is not None and len(v) == 10 and v.isascii() and v.isdigit()]
    ok_arr = np.array(
        [v is not None and len(v) == 10 and v.isascii() and v.isdigit() for v in norm], dtype=bool
    )
    placeholder = np.array([v in ALL_EQUAL for v in norm], dtype=bool)
    out = np.zeros(len(norm), dtype=bool)
    if good:
        raw = np.frombuffer("".join(good).encode("ascii"), dtype=np.uint8)
        digits = raw.reshape(-1, 10).astype(np.int64) - 48
        check = 11 - (digits[:, :9] @ _WEIGHTS) % 11
        check = np.where(check == 11, 0, check)
        out[ok_arr] = (check != 10) & (check == digits[:, 9])
    return out & ~placeholder


@overload
def is_valid_nhs_number(values: str | int | None) -> bool: ...
@overload
def is_valid_nhs_number(values: pd.Series) -> pd.Series: ...  # type: ignore[overload-overlap]
@overload
def is_valid_nhs_number(values: Iterable[Any]) -> np.ndarray: ...


def is_valid_nhs_number(values: Any) -> bool | pd.Series | np.ndarray:
    """Check NHS numbers with the modulus-11 check digit.

    Parameters
    ----------
    values
        One NHS number (``str``/``int``), a pandas Series, or any iterable of them.
        Spaces and hyphens between digits are accepted.

    Returns
    -------
    bool, pandas.Series of bool or numpy.ndarray of bool
        ``True`` where the value has exactly 10 digits and a correct check digit.
        Missing values, wrong lengths, non-digits, check digit 10 and ten equal digits
        (``0000000000``) give ``False``.

    References
    ----------
    NHS Digital, NHS Data Dictionary: "NHS Number" (modulus 11 algorithm).

    Examples
    --------
    >>> is_valid_nhs_number("943 476 5919")
    True
    >>> is_valid_nhs_number(["9434765919", "9434765918"]).tolist()
    [True, False]
    """
    if values is None or isinstance(values, (str, bytes, int, np.integer, float)):
        if isinstance(values, bytes):
            values = values.decode("ascii", errors="replace")
        return _valid_scalar(values)
    if isinstance(values, pd.Series):
        return pd.Series(_valid_vector(values), index=values.index, name=values.name)
    return _valid_vector(values)
