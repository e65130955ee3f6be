"""The narrative of a matched design: referred people against comparators matched at the
moment of referral, compared by difference-in-differences (the 2x2 and the event study)."""

from __future__ import annotations

import pandas as pd

from spevidence.report._labels import outcome_label
from spevidence.report.narrative.shared import (
    ALPHA,
    SMD_BAR,
    SUPPRESSED,
    TRENDS_CAPTION,
    WARN,
    NarrativeBase,
    _f,
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

    def _effect_rows(self) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        did = self.rb.table("did_estimates")
        if did is not None and not did.empty:
            for _, r in _main_rows(did).iterrows():
                rows.append(
                    {
                        "item": f"Effect on {outcome_label(r.get('outcome', ''))}",
                        "value": effect_size(r, self._period()),
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
                lines.append(f"- {effect_sentence(row, period=self._period())}")
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
        naive = self.rb.table("naive_before_after")
        if naive is not None and not naive.empty:
            lines.append(
                "\nA simple before-and-after comparison of the referred group alone (the method "
                "of most published evaluations) is shown for contrast in the trends section; it "
                "mixes the effect of the service with the natural fall in use after a peak "
                "(regression to the mean)."
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
                lines.append(f"- {effect_sentence(r, period=self._period())}")
        lines += self._board_value()
        naive = self.rb.table("naive_before_after")
        if naive is not None and not naive.empty and "change_pct" in naive.columns:
            avg = pd.to_numeric(naive["change_pct"], errors="coerce").mean()
            lines.append(
                f"- A simple before-and-after count would have suggested changes of about "
                f"{_f(avg, 0)}%; much of that is the natural fall after a peak of use, which the "
                "comparison group removes."
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
            lines.append(f"- {effect_sentence(row, period=self._period())}")
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
