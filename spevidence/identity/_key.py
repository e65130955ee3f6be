"""Pseudonymisation key and keyed hashing (HMAC-SHA256).

The key is held by the data controller. It is read from a file or from the
``SPEVIDENCE_KEY`` environment variable, must be at least 32 bytes, and is never
logged, printed, written or included in an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, overload

import pandas as pd

from spevidence.errors import IdentityError
from spevidence.identity.nhs import normalise_nhs_number

MIN_KEY_BYTES = 32
KEY_ENV_VAR = "SPEVIDENCE_KEY"
_FIX = (
    "Ask the data controller for the key, or make a new one (for a new linkage only) "
    'with: python -c "import secrets; print(secrets.token_hex(32))" > key.txt'
)


class KeyFileWarning(UserWarning):
    """The key file can be read by other users (its value is never shown)."""


def _warn_if_shared(p: Path) -> None:
    """Warn (one line) when group or others may read the key file (POSIX modes only)."""
    if os.name != "posix":
        return
    mode = stat.S_IMODE(p.stat().st_mode)
    if mode & 0o077:
        warnings.warn(
            f"the key file {p} can be read by other users (mode {mode:o}); "
            f"restrict it to its owner with: chmod 600 {p}",
            KeyFileWarning,
            stacklevel=3,
        )


class Key:
    """A pseudonymisation key. Its value is never shown (repr/str are redacted)."""

    __slots__ = ("_secret",)
    _secret: bytes

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, (bytes, bytearray)):
            raise IdentityError("The pseudonymisation key must be bytes.")
        if len(secret) < MIN_KEY_BYTES:
            raise IdentityError(
                f"The pseudonymisation key is {len(secret)} bytes; at least {MIN_KEY_BYTES} "
                f"bytes are required. {_FIX}"
            )
        object.__setattr__(self, "_secret", bytes(secret))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Key is immutable")

    def __repr__(self) -> str:
        return f"Key(<redacted, {len(self._secret)} bytes>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("A pseudonymisation key cannot be pickled.")

    def digest(self, message: bytes) -> str:
        """HMAC-SHA256 of ``message`` as 64 lowercase hex characters."""
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def load_key(path: str | os.PathLike[str] | None = None, *, env_var: str = KEY_ENV_VAR) -> Key:
    """Read the pseudonymisation key from a file, else from an environment variable.

    Parameters
    ----------
    path
        A file holding the key (surrounding whitespace and a final newline are
        ignored). When ``None``, the environment variable is used.
    env_var
        Name of the environment variable holding the key (default ``SPEVIDENCE_KEY``).

    Returns
    -------
    Key
        The key, at least 32 bytes; its value is never shown.

    Raises
    ------
    IdentityError
        No key found, the file cannot be read, or the key is shorter than 32 bytes.

    Warns
    -----
    KeyFileWarning
        The key file can be read by its group or by others (fix: ``chmod 600``).
    """
    if path is not None:
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise IdentityError(
                f"Cannot read the key file {str(p)!r} ({exc.strerror or type(exc).__name__}). "
                "Fix: check the path given to --key-file and that you may read it."
            ) from None
        key = Key(raw.strip())
        _warn_if_shared(p)
        return key
    value = os.environ.get(env_var)
    if value is None or not value.strip():
        raise IdentityError(
            "No pseudonymisation key: the extracts hold raw NHS numbers, which must be "
            f"pseudonymised before linkage. Fix: pass --key-file PATH or set {env_var}."
        )
    return Key(value.strip().encode("utf-8"))


def _coerce_key(key: Key | bytes | str) -> Key:
    if isinstance(key, Key):
        return key
    if isinstance(key, str):
        return Key(key.encode("utf-8"))
    return Key(key)


def _one(k: Key, value: object) -> str | None:
    s = normalise_nhs_number(value)
    if s is None or s == "":
        return None
    return k.digest(s.encode("utf-8"))


@overload
def pseudonymise(values: str | int | None, key: Key | bytes | str) -> str | None: ...
@overload
def pseudonymise(values: pd.Series, key: Key | bytes | str) -> pd.Series: ...  # type: ignore[overload-overlap]
@overload
def pseudonymise(values: Iterable[Any], key: Key | bytes | str) -> list[str | None]: ...


def pseudonymise(values: Any, key: Key | bytes | str) -> str | pd.Series | list[str | None] | None:
    """Replace identifiers by keyed pseudonyms (HMAC-SHA256, 64 hex characters).

    The same identifier and key always give the same pseudonym, so extracts
    pseudonymised separately still link; without the key the mapping cannot be
    rebuilt by hashing all 10⁹ possible NHS numbers (a plain hash could be). Spaces
    and hyphens are removed first, so ``"943 476 5919"`` and ``"9434765919"`` agree.
    Missing values stay missing. Validity is not checked here (see
    :func:`is_valid_nhs_number`).

    Parameters
    ----------
    values
        One identifier, a pandas Series, or an iterable of identifiers.
    key
        A :class:`Key` from :func:`load_key` (or at least 32 bytes).

    Returns
    -------
    str, pandas.Series or list
        Pseudonyms, in the same order and shape as ``values``.

    References
    ----------
    Krawczyk, Bellare & Canetti (1997), RFC 2104 "HMAC: Keyed-Hashing for Message
    Authentication"; NHS Digital ISB1523 Anonymisation Standard for Publishing Health
    and Social Care Data.
    """
    k = _coerce_key(key)
    if values is None or isinstance(values, (str, int)):
        return _one(k, values)
    if isinstance(values, pd.Series):
        return pd.Series(
            [_one(k, v) for v in values], index=values.index, name=values.name, dtype="object"
        )
    return [_one(k, v) for v in values]
