"""Synthetic identifiers: NHS numbers from the 999 test range, or pseudonym tokens."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

_WEIGHTS = np.arange(10, 1, -1, dtype=np.int64)  # weights 10..2 on the first nine digits
_TEST_PREFIX = 999_000_000


def check_digits(prefix9: np.ndarray) -> np.ndarray:
    """Modulus-11 check digit of nine-digit numbers; 10 marks a prefix with no valid number."""
    p = np.asarray(prefix9, dtype=np.int64)
    digits = (p[:, None] // (10 ** np.arange(8, -1, -1, dtype=np.int64))) % 10
    c = 11 - (digits @ _WEIGHTS) % 11
    return np.where(c == 11, 0, c)


def _valid_test_prefixes() -> np.ndarray:
    prefixes = _TEST_PREFIX + np.arange(1_000_000, dtype=np.int64)
    return prefixes[check_digits(prefixes) != 10]


class IdSpace:
    """A seeded bijection from person index (0, 1, 2, ...) to a unique identifier.

    NHS numbers: index -> position in the list of valid 999-range numbers by an affine
    permutation (a * i + b) mod M, so ids are unique, scrambled and chunk independent.
    Pseudonyms: 32 hex characters from two rounds of the splitmix64 finaliser (a bijection
    on 64-bit integers), keyed by the seed.
    """

    def __init__(self, kind: str, seed: int) -> None:
        self.kind = kind
        rng = np.random.default_rng([seed, 0x1D5])
        if kind == "nhs_number":
            self._valid = _valid_test_prefixes()
            m = len(self._valid)
            a = int(rng.integers(m // 3, m - 1))
            while math.gcd(a, m) != 1:
                a += 1
            self._a, self._b, self._m = a, int(rng.integers(0, m)), m
        else:
            self._k1, self._k2 = (int(x) for x in rng.integers(1, 2**63 - 1, size=2))

    @property
    def capacity(self) -> int:
        return self._m if self.kind == "nhs_number" else 2**62

    def numbers(self, index: np.ndarray) -> np.ndarray:
        """Ten-digit NHS numbers (int64) for the given person indices."""
        pos = (np.asarray(index, dtype=np.int64) * self._a + self._b) % self._m
        prefix = self._valid[pos]
        return prefix * 10 + check_digits(prefix)

    def ids(self, index: np.ndarray, *, invalid: np.ndarray | None = None) -> pa.Array:
        """Identifier strings for the indices; ``invalid`` marks NHS numbers to corrupt."""
        index = np.asarray(index, dtype=np.int64)
        if self.kind == "nhs_number":
            num = self.numbers(index)
            if invalid is not None and invalid.any():
                last = num % 10
                # shift the check digit by 1..9: the result can never pass modulus 11
                shift = 1 + (index[invalid] * 7919) % 9
                num[invalid] = num[invalid] - last[invalid] + (last[invalid] + shift) % 10
            digits = (num[:, None] // (10 ** np.arange(9, -1, -1, dtype=np.int64))) % 10
            return _fixed_width_strings((digits + 48).astype(np.uint8))
        return _fixed_width_strings(_hex_tokens(index, self._k1, self._k2))


def _mix64(x: np.ndarray, key: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(key)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_tokens(index: np.ndarray, k1: int, k2: int) -> np.ndarray:
    x = index.astype(np.uint64)
    h1 = _mix64(x, k1)
    h2 = _mix64(h1 ^ np.uint64(0x9E3779B97F4A7C15), k2)
    raw = np.stack([h1, h2], axis=1).astype(">u8").view(np.uint8).reshape(len(x), 16)
    chars = np.empty((len(x), 32), dtype=np.uint8)
    chars[:, 0::2] = _HEX[raw >> 4]
    chars[:, 1::2] = _HEX[raw & 15]
    return chars


def _fixed_width_strings(chars: np.ndarray) -> pa.Array:
    """A pyarrow string array from an (n, width) array of ASCII codes, without copies."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(chars).ravel()
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
