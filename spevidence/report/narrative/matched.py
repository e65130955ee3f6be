"""The narrative of a matched design: referred people against comparators matched at the
moment of referral, compared by difference-in-differences (the 2x2 and the event study)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from spevidence.report._labels import as_percent, outcome_label
from spevidence.report.narrative.shared import (
    ALPHA,
    SMD_BAR,
    SUPPRESSED,
    TRENDS_CAPTION,
    WARN,
    NarrativeBase,
    _f,
    _num,
    effect_sentence,
    effect_size,
)
from spevidence.report.sections import markdown_table, not_run


def _main_rows(did: pd.DataFrame) -> pd.DataFrame:
    df = did
    if "analysis" in df.columns:
        main = df[df["analysis"].isna() | (df["analysis"].astype(str).str.lower() == "main")]
        if len(main):
            df = main
    if "outcome" in df.columns:
        df = df.groupby("outcome", sort=False).head(1)
    return df.reset_index(drop=True)


class MatchedNarrative(NarrativeBase):
    """Sections of a matched bundle: every bundle but a staggered one (see
    :func:`spevidence.report.narrative.Narrative`)."""

    def _period(self) -> str:
        return str(self.rb.protocol.get("period", "month"))

    def _sentence(self, row: pd.Series) -> str:
        """One estimate in words, at the precision of the disclosure step."""
        return effect_sentence(row, period=self._period(), rules=self._rules())

    def _effect_rows(self) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        did = self.rb.table("did_estimates")
        if did is not None and not did.empty:
            for _, r in _main_rows(did).iterrows():
                rows.append(
                    {
                        "item": f"Effect on {outcome_label(r.get('outcome', ''))}",
                        "value": effect_size(r, self._period(), rules=self._rules()),
                    }
                )
        return rows

    def _headline_rows(self) -> pd.DataFrame | None:
        did = self.rb.table("did_estimates")
        return _main_rows(did) if did is not None and not did.empty else None

    def _observational(self) -> str:
        return (
            "This is an observational study. Matching and difference-in-differences remove "
            "differences in measured characteristics and in stable unmeasured ones, but not "
            "unmeasured factors that change at the time of referral."
        )

    def summary(self) -> str:
        lines: list[str] = [self.synthetic_banner()]
        did = self.rb.table("did_estimates")
        n = self._final_count()
        intro = "This report compares people referred to social prescribing with matched "
        intro += "people who had not been referred at the same moment, before and after referral "
        intro += "(difference-in-differences). "
        if n is not None:
            intro += (
                f"The final analysis included {n} referred people, the last step of the cohort "
                "flow (rounded for disclosure control). "
            )
        lines.append(intro)
        if did is None or did.empty:
            lines.append("\n" + not_run("did_estimates"))
        else:
            lines.append(
                "\nKey findings (change in NHS use caused by referral, relative to comparators):\n"
            )
            for _, row in _main_rows(did).iterrows():
                lines.append(f"- {self._sentence(row)}")
        if sroi := self._sroi_sentence():
            lines.append(sroi)
        caveats = []
        if self._pretrend_failures():
            caveats.append(
                "before referral, the referred group's use was already diverging from the "
                f"comparators' ({', '.join(self._pretrend_failures())}), "
                "so the estimates may be biased"
            )
        if self._imbalanced():
            caveats.append(
                f"{len(self._imbalanced())} characteristic(s) remained imbalanced after matching"
            )
        if loss := self._row_loss():
            caveats.append(loss)
        if caveats:
            lines.append(WARN + "**Read with care:** " + "; ".join(caveats) + ".\n:::")
        if contrast := self.regression_to_mean():
            lines.append(
                "\nA simple before-and-after comparison of the referred group alone (the method "
                "of most published evaluations) mixes the effect of the service with the natural "
                "fall in use after a peak (regression to the mean). Beside the matched "
                "estimate:\n" + contrast
            )
        return "\n".join(lines) + "\n"

    def board_findings(self) -> str:
        """Three or four plain-English bullets for a board: effects and value for money."""
        lines: list[str] = []
        did = self.rb.table("did_estimates")
        n = self._final_count()
        who = f"{n} people referred to link workers" if n else "People referred to link workers"
        lines.append(
            f"- {who} were compared with similar people not referred at the same time, "
            "before and after referral."
        )
        if did is None or did.empty:
            lines.append("- The main comparison was not run in this evaluation.")
        else:
            for _, r in _main_rows(did).iterrows():
                lines.append(f"- {self._sentence(r)}")
        lines += self._board_value()
        if changes := self._naive_changes():
            lines.append(
                "- A simple before-and-after count of the referred alone would have suggested "
                f"changes of {changes}; part of that is the natural fall after a peak of use, "
                "which the comparison group removes (table below)."
            )
        return "\n".join(lines) + "\n"

    def board_caveats(self) -> str:
        """Short caveats for a board, drawn from the checks in the bundle."""
        items: list[str] = []
        bad = self._pretrend_failures()
        if bad:
            items.append(
                "**Caution**: before referral, use was already diverging for "
                + ", ".join(bad)
                + "; those estimates may be biased."
            )
        elif self.rb.has("pretrend_test"):
            items.append("Before referral the two groups followed parallel trends (a good sign).")
        imb = self._imbalanced()
        if imb:
            items.append(f"{len(imb)} characteristic(s) stayed imbalanced after matching.")
        elif self.rb.has("balance"):
            items.append("The matched groups were similar on every measured characteristic.")
        items.append(
            "This is an observational study: unmeasured differences that change at the time of "
            "referral cannot be ruled out."
        )
        items.append(SUPPRESSED)
        return "\n".join(f"- {i}" for i in items) + "\n"

    def balance(self) -> str:
        if not self.rb.has("balance"):
            return not_run("balance")
        bad = self._imbalanced()
        if not bad:
            return (
                f"\nAfter matching every characteristic had an absolute SMD below {SMD_BAR}: the "
                "groups were well balanced on what was measured.\n"
            )
        return (
            WARN + f"After matching, {len(bad)} characteristic(s) still had an "
            f"absolute SMD above {SMD_BAR}: {', '.join(bad)}. Estimates may partly reflect "
            "these differences.\n:::\n"
        )

    def trends_caption(self) -> str:
        """Caption of the trends figure; says which outcomes are shown by quarter or
        half-year because their monthly counts were too small to release."""
        # imported here: report.figures imports matplotlib (0.7 s), which a narrative
        # without a trends table does not need
        from spevidence.report.figures import pooled_outcomes

        text = TRENDS_CAPTION
        tr = self.rb.table("trends")
        pooled = pooled_outcomes(tr) if tr is not None else {}
        if pooled:
            names = "; ".join(f"{outcome_label(o)} by {p}" for o, p in pooled.items())
            text += (
                f" ({names}: by month most of their counts were too small to release under "
                "disclosure control, so events and person-months are summed over each period "
                "from referral and drawn at its middle month)"
            )
        return text

    def naive(self) -> str:
        if not self.rb.has("naive_before_after"):
            return ""
        return (
            "\nFor contrast, the simple before-and-after change in the referred group alone. "
            "It is **not** an estimate of effect: people are often referred at a peak of use, "
            "which falls afterwards anyway.\n"
            + self.rb.table_md(
                "naive_before_after",
                caption="Naive before-and-after comparison (referred group only)",
                columns=[
                    "outcome",
                    "n",
                    "mean_before",
                    "mean_after",
                    "change_pct",
                    "comparator_change_pct",
                ],
                digits={
                    "mean_before": 2,
                    "mean_after": 2,
                    "change_pct": 1,
                    "comparator_change_pct": 1,
                },
                rename={
                    "n": "referred",
                    "mean_before": "per person-year before",
                    "mean_after": "per person-year after",
                    "change_pct": "change %",
                    "comparator_change_pct": "change % in comparators",
                },
            )
            + self.regression_to_mean()
        )

    def _naive_changes(self) -> str:
        """Each outcome's naive before/after change of the referred, e.g. "−26.3% in GP
        appointments, …" ("" when the bundle has none)."""
        naive = self.rb.table("naive_before_after")
        if naive is None or naive.empty or "change_pct" not in naive.columns:
            return ""
        return ", ".join(
            f"{_pct(r['change_pct'])} in {outcome_label(r['outcome'])}" for _, r in naive.iterrows()
        )

    def _contrast_rows(self) -> list[dict[str, Any]]:
        """Per outcome: the naive change of the referred and the matched (Poisson) estimate,
        both as % change in the rate, with 95% CIs."""
        naive, did = self.rb.table("naive_before_after"), self.rb.table("did_estimates")
        if naive is None or did is None or naive.empty or did.empty:
            return []
        rows = []
        for _, n in naive.iterrows():
            hit = did[(did["outcome"] == n["outcome"]) & (did["model"] == "poisson")]
            if not len(hit):
                continue
            d = hit.iloc[0]
            rows.append(
                {
                    "outcome": n["outcome"],
                    "naive": _num(n["change_pct"]),
                    "naive_ci": (_num(n.get("change_conf_low")), _num(n.get("change_conf_high"))),
                    "did": as_percent(_num(d["estimate"]), "log"),
                    "did_ci": (
                        as_percent(_num(d["conf_low"]), "log"),
                        as_percent(_num(d["conf_high"]), "log"),
                    ),
                }
            )
        return rows

    def regression_to_mean(self, *, words: bool = True) -> str:
        """The regression-to-the-mean contrast: per outcome, the naive before/after change of
        the referred beside the matched estimate (both % change in the rate, 95% CIs), and
        the difference in words ("" when the bundle lacks either)."""
        rows = self._contrast_rows()
        if not rows:
            return ""
        table = pd.DataFrame(
            {
                "Outcome": [outcome_label(r["outcome"]) for r in rows],
                "Before and after, referred only (95% CI)": [
                    _pct_ci(r["naive"], r["naive_ci"]) for r in rows
                ],
                "Matched estimate of the effect (95% CI)": [
                    _pct_ci(r["did"], r["did_ci"]) for r in rows
                ],
                "Difference (percentage points)": [_f(r["naive"] - r["did"], 1) for r in rows],
            }
        )
        text = "\n".join(f"- {_contrast_words(r)}" for r in rows) if words else ""
        return (
            markdown_table(
                table,
                caption="Regression to the mean: the naive before-and-after change of the "
                "referred against the matched difference-in-differences estimate (% change in "
                "the rate of use; the matched estimate from the Poisson model)",
                label="tbl-rtm",
            )
            + "\n"
            + text
            + "\n"
        )

    def did(self) -> str:
        did = self.rb.table("did_estimates")
        if did is None or did.empty:
            return not_run("did_estimates")
        lines = [
            "\nThe estimates below are the difference between the change in the referred "
            "group and the change in matched comparators over the same months.\n"
        ]
        for _, row in _main_rows(did).iterrows():
            lines.append(f"- {self._sentence(row)}")
        skipped = self.rb.table("did_not_estimated")
        for _, r in (skipped if skipped is not None else pd.DataFrame()).iterrows():
            lines.append(
                f"- **{outcome_label(r['outcome'])}** ({r['model']}): not estimated, {r['reason']}."
            )
        return "\n".join(lines) + "\n"

    def pretrend(self) -> str:
        if not self.rb.has("event_study") and not self.rb.has("pretrend_test"):
            return not_run("event_study")
        bad = self._pretrend_failures()
        if bad:
            return (
                WARN
                + "The pre-trend test **failed** for "
                + ", ".join(bad)
                + f" (p < {ALPHA}): before referral the groups were already moving apart, so the "
                "parallel-trends assumption behind difference-in-differences is doubtful.\n:::\n"
            )
        if self.rb.has("pretrend_test"):
            return (
                "\nBefore referral the referred group and comparators moved in parallel: the "
                f"joint pre-trend test did not reject (p ≥ {ALPHA}). This supports, but cannot "
                "prove, the parallel-trends assumption.\n"
            )
        return "\n*The joint pre-trend test was not run in this evaluation.*\n"

    def sensitivity(self) -> str:
        sens = self.rb.table("sensitivity")
        if sens is None or sens.empty:
            did = self.rb.table("did_estimates")
            if did is not None and "analysis" in did.columns:
                sens = did[
                    did["analysis"].notna() & (did["analysis"].astype(str).str.lower() != "main")
                ]
        if sens is None or sens.empty:
            return not_run("sensitivity")
        cols = [
            c
            for c in (
                "analysis",
                "outcome",
                "model",
                "estimate",
                "conf_low",
                "conf_high",
                "p_value",
            )
            if c in sens.columns
        ]
        return markdown_table(
            sens[cols] if cols else sens,
            caption="Sensitivity analyses: the main estimate under alternative choices",
            label="tbl-sensitivity",
            digits=3,
        )


def _pct(v: Any) -> str:
    """A percentage change with its sign: "+27.5%", "−26.3%"."""
    x = _num(v)
    return _f(x, 1) + "%" if not x > 0 else "+" + _f(x, 1) + "%"


def _pct_ci(est: float, ci: tuple[float, float]) -> str:
    if pd.isna(ci[0]) or pd.isna(ci[1]):
        return f"{_pct(est)} (no interval in the bundle)"
    return f"{_pct(est)} ({_pct(ci[0])} to {_pct(ci[1])})"


def _contrast_words(r: dict[str, Any]) -> str:
    """The difference between the naive change and the matched estimate, in words."""
    name, gap = outcome_label(r["outcome"]), r["naive"] - r["did"]
    # what the comparators say the referred's rate would have done without referral
    without = 100.0 * ((1 + r["naive"] / 100.0) / (1 + r["did"] / 100.0) - 1.0)
    if abs(gap) < 1.0:
        return (
            f"**{name}**: the before-and-after change ({_pct(r['naive'])}) and the matched "
            f"estimate ({_pct(r['did'])}) agree to within a percentage point: little of the "
            "change is regression to the mean."
        )
    # the outcomes are uses of services: a lower change reads as a larger benefit
    side, looks = ("below", "better") if gap < 0 else ("above", "worse")
    return (
        f"**{name}**: the before-and-after change ({_pct(r['naive'])}) is "
        f"{_f(abs(gap), 1)} percentage points {side} the matched estimate of the effect "
        f"({_pct(r['did'])}), so a before-and-after count makes the service look {looks} "
        "than the matched comparison does; without referral the referred's rate would have "
        f"changed by about {_pct(without)} (regression to the mean and other change over "
        "time, as the matched comparators show)."
    )
