"""The social-prescribing SNOMED CT codelist (DOMAIN.md; versioned CSV in protocols/codelists).

The two concepts below are the ones the project has checked. Further concepts (for
example "social prescribing offered" or signposting codes) exist but must be verified in
the SNOMED CT browser before they are added to a new codelist version.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spevidence.errors import DataError

CODELIST_COLUMNS = ("code", "term", "source", "version", "notes")
REFERRAL_CODE = "871731000000106"
DECLINED_CODE = "871711000000103"


def default_codelist() -> pd.DataFrame:
    """The built-in codelist ``social_prescribing_snomed_v1`` (same rows as the CSV)."""
    note = "Verified concept; further codes must be verified in the SNOMED CT browser first."
    rows = [
        (REFERRAL_CODE, "Referral to social prescribing service", "SNOMED CT UK", "v1", note),
        (DECLINED_CODE, "Social prescribing declined", "SNOMED CT UK", "v1", note),
    ]
    return pd.DataFrame(rows, columns=list(CODELIST_COLUMNS)).astype(str)


def read_codelist(path: str | Path) -> pd.DataFrame:
    """Read a codelist CSV with at least the columns ``code`` and ``term`` (codes as text)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"codelist file {p.name!r} not found; give the path of a CSV codelist.")
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    return normalise_codelist(df)


def normalise_codelist(codelist: pd.DataFrame | str | Path | None) -> pd.DataFrame:
    """Codelist as a frame with text columns ``code`` and ``term`` (``None`` -> built-in)."""
    if codelist is None:
        return default_codelist()
    if isinstance(codelist, str | Path):
        return read_codelist(codelist)
    missing = [c for c in ("code", "term") if c not in codelist.columns]
    if missing:
        raise DataError(
            f"codelist ({len(codelist)} rows) lacks column(s) {missing}; "
            "a codelist needs at least 'code' and 'term'."
        )
    out = codelist.copy()
    out["code"] = out["code"].astype(str).str.strip()
    out["term"] = out["term"].astype(str)
    if out["code"].duplicated().any():
        raise DataError(
            f"codelist has {int(out['code'].duplicated().sum())} duplicated code(s); "
            "each code must appear once."
        )
    return out.reset_index(drop=True)
