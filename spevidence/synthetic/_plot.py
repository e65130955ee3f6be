"""GP use by month around referral (referred vs not): the regression-to-the-mean picture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

DAYS_PER_MONTH = 365.25 / 12


def _read(out: Path, name: str, fmt: str) -> pd.DataFrame:
    if fmt == "parquet":
        return pd.read_parquet(out / f"{name}.parquet")
    return pd.read_csv(out / f"{name}.csv", dtype={"person_id": str})


def around_referral(
    out: str | Path,
    *,
    fmt: Literal["parquet", "csv"] = "parquet",
    months: int = 12,
    comparators_per_case: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """Attended GP appointments per person-month by month relative to referral.

    Referred people (first referral, any outcome) whose registration covers ``months``
    months either side of referral are compared with a random sample of never-referred
    people given pseudo referral dates drawn from the referred people's dates.

    Returns
    -------
    pandas.DataFrame
        Columns ``group`` ("referred" / "not referred"), ``month`` (-months..months-1),
        ``gp_per_person_month``, ``persons``.
    """
    out = Path(out)
    pop = _read(out, "population", fmt)
    ref = _read(out, "referrals", fmt)
    gp = _read(out, "gp_appointments", fmt)
    gp = gp[(gp["status"] == "attended") & (gp["staff_role"] == "gp")]
    ref = ref.sort_values(["person_id", "referral_date"]).drop_duplicates("person_id")
    rng = np.random.default_rng(seed)
    span = pd.Timedelta(days=round(months * DAYS_PER_MONTH))
    start = pd.to_datetime(pop["registration_start"])
    end = pd.to_datetime(pop["registration_end"]).fillna(pd.Timestamp.max.normalize())
    reg = pd.DataFrame({"person_id": pop["person_id"], "start": start, "end": end})
    truth = out / "truth.json"
    if truth.is_file():
        window = json.loads(truth.read_text("utf-8"))["window"]
        w0, w1 = pd.Timestamp(window["start"]), pd.Timestamp(window["end"])
    else:
        dates = pd.to_datetime(gp["appointment_date"])
        w0, w1 = dates.min(), dates.max()
    cases = ref[["person_id"]].assign(index_date=pd.to_datetime(ref["referral_date"]))
    never = reg[~reg["person_id"].isin(ref["person_id"])]
    k = min(len(never), comparators_per_case * max(len(cases), 1))
    ctrl = never.iloc[np.sort(rng.choice(len(never), size=k, replace=False))][["person_id"]]
    if len(cases):
        pick = rng.integers(0, len(cases), size=k)
        ctrl = ctrl.assign(index_date=cases["index_date"].to_numpy()[pick])
    else:
        ctrl = ctrl.assign(index_date=pd.Series(pd.NaT, index=ctrl.index))
    rows = []
    for group, idx in (("referred", cases), ("not referred", ctrl)):
        d = idx.merge(reg, on="person_id")
        ok = (
            (d["index_date"] - span >= d["start"])
            & (d["index_date"] - span >= w0)
            & (d["index_date"] + span <= d["end"])
            & (d["index_date"] + span <= w1)
        )
        d = d[ok]
        ev = gp[["person_id", "appointment_date"]].merge(d[["person_id", "index_date"]])
        rel = (pd.to_datetime(ev["appointment_date"]) - ev["index_date"]).dt.days
        m = pd.Series(np.floor(rel.to_numpy() / DAYS_PER_MONTH).astype(int))
        m = m[(m >= -months) & (m < months)]
        counts = m.value_counts().reindex(range(-months, months), fill_value=0)
        n = len(d)
        rows.append(
            pd.DataFrame(
                {
                    "group": group,
                    "month": counts.index.to_numpy(),
                    "gp_per_person_month": counts.to_numpy() / n if n else np.nan,
                    "persons": n,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def plot_around_referral(
    out: str | Path, *, fmt: Literal["parquet", "csv"] = "parquet", title: str | None = None
) -> Any:
    """Figure: attended GP appointments per person-month around referral, referred vs not."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = around_referral(out, fmt=fmt)
    colours = sns.color_palette("colorblind", 2)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for colour, (group, d) in zip(colours, data.groupby("group", sort=False), strict=False):
        n = int(d["persons"].iloc[0])
        ax.plot(
            d["month"],
            d["gp_per_person_month"],
            marker="o",
            ms=3,
            color=colour,
            label=f"{group} (n = {n:,})",
        )
    ax.axvline(0, color="0.4", ls="--", lw=1)
    ax.set_xlabel("Months from referral (comparators: a random pseudo referral date)")
    ax.set_ylabel("GP appointments attended per person per month")
    ax.set_title(title or "GP use around the date of referral")
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig
