"""The narrative of a staggered design: everyone registered, each cohort first treated in
one period compared with people not yet or never treated (Callaway and Sant'Anna 2021;
Wooldridge's extended two-way fixed effects), with no matching."""

from __future__ import annotations

from typing import Any

import pandas as pd

from spevidence.did.headline import headline_estimator
from spevidence.report._labels import outcome_label
from spevidence.report.narrative.shared import (
    ALPHA,
    SUPPRESSED,
    WARN,
    NarrativeBase,
    _f,
    effect_sentence,
)
from spevidence.report.sections import NOT_AVAILABLE, markdown_table, not_run

# reasons in the staggered estimators' attrition, as a reader would say them
PLAIN_REASONS = {
    "unit not observed in every period (balanced panel required)": "not registered for the "
    "whole study window",
}


def _effect_text(row: pd.Series) -> str:
    """A staggered estimate with its 95% CI, in events per person per period."""
    if pd.isna(row.get("estimate")):
        return "withheld (too few people)"
    return (
        f"{_f(row['estimate'], 3)} (95% CI {_f(row['conf_low'], 3)} to {_f(row['conf_high'], 3)})"
    )


class StaggeredNarrative(NarrativeBase):
    """Sections of a staggered bundle: staggered estimates and no matched DiD (see
    :func:`spevidence.report.narrative.Narrative`)."""

    def _period(self) -> str:
        return str(self.rb.protocol.get("period", "quarter"))

    def _main(self) -> pd.DataFrame:
        """The simple (overall) aggregation per outcome and estimator."""
        st = self.rb.table("staggered")
        if st is None or "aggregation" not in st.columns:
            return pd.DataFrame(columns=["outcome", "estimator"])
        return st.loc[st["aggregation"] == "simple"].reset_index(drop=True)

    def _design(self) -> str:
        spec = self.rb.protocol.get("staggered") or {}
        period = self._period()
        cohort = {
            "referral": "the " + period + " of their first accepted referral",
            "service_start": "the " + period + " in which their PCN's link-worker service "
            "started (its first accepted referral)",
        }.get(str(spec.get("cohort", "referral")), "the " + period + " first treated")
        control = (
            "people not yet referred and people never referred"
            if spec.get("control", "notyet") == "notyet"
            else "people never referred"
        )
        names = {
            "callaway_santanna": "Callaway and Sant'Anna (2021)",
            "etwfe": "Wooldridge's extended two-way fixed effects "
            f"({spec.get('etwfe_family', 'poisson')})",
        }
        est = " and ".join(names.get(str(e), str(e)) for e in spec.get("estimators", []))
        return (
            f"\nEveryone registered was followed {period} by {period}. Each person's *cohort* "
            f"is {cohort}; each cohort is compared with {control} in the same {period}s "
            f"(staggered difference-in-differences, {est}). No one is matched: the whole "
            "population is the comparison, as in the national evaluation of Wilding et al. "
            "(2025). Effects are changes in events per person per "
            f"{period} among treated people.\n"
        )

    def _spec(self) -> dict[str, Any]:
        spec = self.rb.protocol.get("staggered") or {}
        return spec if isinstance(spec, dict) else {}

    def _words(self) -> dict[str, str]:
        """Who is treated, when treatment starts and whom they are compared with."""
        spec = self._spec()
        never = spec.get("control", "notyet") == "never"
        if spec.get("cohort") == "service_start":
            return {
                "treated": "people registered in PCNs that started a link-worker service",
                "start": "the service started",
                "comparison": "people in PCNs that never started it"
                if never
                else "people in PCNs whose service had not yet started, or never did",
            }
        return {
            "treated": "people referred to link workers",
            "start": "their first accepted referral",
            "comparison": "people never referred"
            if never
            else "people not yet referred or never referred",
        }

    def _headline(self) -> tuple[pd.DataFrame, str]:
        """The headline estimator's simple aggregation, one row per outcome (withheld
        estimates included), and its name: the estimate the SROI values
        (:func:`spevidence.did.headline.headline_estimator`)."""
        main = self._main()
        if main.empty or not {"estimate", "std_error"} <= set(main.columns):
            return main, ""
        name = headline_estimator(main)
        return main.loc[main["estimator"] == name].reset_index(drop=True), name

    def _disagreement(self) -> list[str]:
        """Outcomes whose simple effects by two estimators have disjoint 95% CIs."""
        main = self._main()
        out = []
        for o, rows in main.dropna(subset=["estimate"]).groupby("outcome", sort=False):
            lo = pd.to_numeric(rows["conf_low"], errors="coerce")
            hi = pd.to_numeric(rows["conf_high"], errors="coerce")
            if len(rows) > 1 and lo.max() > hi.min():
                out.append(outcome_label(o))
        return out

    def _excluded(self) -> str:
        """How many people of the linked panel the estimation left out, and why."""
        att = self.rb.table("attrition")
        if att is None or not {"step", "n", "n_dropped", "reason"} <= set(att.columns):
            return ""
        ex = att.loc[att["step"].astype(str).str.startswith("Excluded")]
        dropped = pd.to_numeric(ex["n_dropped"], errors="coerce")
        if not dropped.sum() > 0:
            return ""
        reasons = [PLAIN_REASONS.get(str(r), str(r)) for r in ex.loc[dropped > 0, "reason"]]
        first = pd.to_numeric(att["n"], errors="coerce").dropna()
        of = f" of the {_f(first.iloc[0], 0)}" if len(first) else ""
        return (
            f"{_f(dropped.sum(), 0)}{of} people in the linked panel were left out of the "
            f"analysis ({'; '.join(reasons)}): the estimates describe the people analysed."
        )

    def _observational(self) -> str:
        w = self._words()
        return (
            "This is an observational study. Staggered difference-in-differences removes "
            "stable differences between people and changes shared by everyone in the same "
            f"{self._period()}, but not unmeasured changes that coincide with "
            f"{w['start']}."
        )

    def _people_analysed(self) -> str:
        if self._spec().get("cohort") == "service_start":
            return "People in PCNs with a link-worker service"
        return "Referred people"

    def _effect_rows(self) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        for _, r in self._main().iterrows():
            rows.append(
                {
                    "item": f"Effect on {outcome_label(r['outcome'])} ({r['estimator']}, per "
                    f"person per {self._period()})",
                    "value": _effect_text(r),
                }
            )
        return rows

    def _headline_rows(self) -> pd.DataFrame | None:
        return self._headline()[0].dropna(subset=["estimate"])

    def summary(self) -> str:
        lines = [self.synthetic_banner(), self._design()]
        n = self._final_count()
        if n is not None:
            lines.append(
                f"The analysis included {n} treated people (rounded for disclosure control).\n"
            )
        main = self._main()
        if len(main):
            lines.append(
                f"\nOverall effect after first treatment (per person per {self._period()}):\n"
            )
            for _, r in main.iterrows():
                lines.append(
                    f"- **{outcome_label(r['outcome'])}** ({r['estimator']}): " + _effect_text(r)
                )
        if sroi := self._sroi_sentence():
            lines.append(sroi[:-1] + " (the SROI section says which estimate it values).")
        bad = self._pretrend_failures()
        if bad:
            lines.append(
                WARN + "**Read with care:** before referral, the treated people's use was already "
                f"moving away from the comparators' ({', '.join(bad)}). People are often "
                "referred at a peak of use that falls afterwards anyway (regression to the mean), "
                "so these estimates may mix that fall with any effect of the service.\n:::"
            )
        if loss := self._row_loss():
            lines.append(WARN + f"**Read with care:** {loss}.\n:::")
        return "\n".join(lines) + "\n"

    def board_findings(self) -> str:
        """Board findings of a staggered design: the headline simple effect of each
        outcome with its 95% CI, per person per period, from the released table."""
        w = self._words()
        period = self._period()
        n = self._final_count()
        who = f"{n} {w['treated']}" if n else w["treated"].capitalize()
        lines = [
            f"- {who} were compared, {period} by {period} before and after {w['start']}, "
            f"with {w['comparison']} (staggered difference-in-differences over the whole "
            "registered population; no matching)."
        ]
        rows, name = self._headline()
        if not name:
            lines.append(
                "- No overall effect could be estimated and released in this evaluation "
                "(the full report says why)."
            )
        else:
            lines.append(
                f"- The estimates are the {name} overall effect: the average change in events "
                f"per person per {period} among the treated, in the {period}s after "
                f"{w['start']}, relative to the comparison group."
            )
            threshold, _ = self._rules()
            for _, r in rows.iterrows():
                if pd.isna(r["estimate"]):
                    lines.append(
                        f"- **{outcome_label(r['outcome'])}**: withheld (it rests on "
                        f"{threshold} or fewer treated people)."
                    )
                else:
                    sentence = effect_sentence(r, period=period, versus="the comparison group")
                    lines.append(f"- {sentence}")
            shown = set(rows["outcome"])
            for o in self.rb.protocol.get("outcomes") or []:
                if o not in shown:
                    lines.append(
                        f"- **{outcome_label(o)}**: not estimated by {name} (see the full report)."
                    )
        lines += self._board_value()
        return "\n".join(lines) + "\n"

    def board_caveats(self) -> str:
        """Board caveats of a staggered design (docs/methods.md section 3.3)."""
        w = self._words()
        referral = self._spec().get("cohort", "referral") == "referral"
        items: list[str] = []
        bad = self._pretrend_failures()
        if bad:
            text = (
                f"**Caution**: before {w['start']}, use was already diverging from the "
                f"comparison group for {', '.join(bad)}"
            )
            if referral:
                text += (
                    ". People are often referred at a peak of use that falls afterwards anyway "
                    "(regression to the mean), so those estimates may overstate any reduction; "
                    "a matched comparison at the date of referral is the safer design."
                )
            else:
                text += "; those estimates may be biased."
            items.append(text)
        elif self.rb.has("staggered_pretrend") and self._pretrend_untested():
            items.append(
                f"The test of parallel trends before {w['start']} could not be computed; "
                "read the pre-treatment estimates of the event study."
            )
        elif self.rb.has("staggered_pretrend"):
            items.append(
                f"Before {w['start']} the treated and the comparison group followed parallel "
                "trends (a good sign, though it cannot prove the design's assumption)."
            )
        else:
            items.append(
                f"Trends before {w['start']} were not tested (the pre-trend test comes with "
                "Callaway-Sant'Anna, which was not run)."
            )
        disagree = self._disagreement()
        if disagree:
            items.append(
                "The two estimators disagree for " + ", ".join(disagree) + " (their 95% "
                "confidence intervals do not overlap): read those estimates with care."
            )
        if left := self._excluded():
            items.append(left)
        items.append(self._observational())
        threshold, _ = self._rules()
        items.append(
            SUPPRESSED[:-1] + f"; estimates resting on {threshold} or fewer treated people "
            "are withheld."
        )
        return "\n".join(f"- {i}" for i in items) + "\n"

    def staggered(self) -> str:
        st = self.rb.table("staggered")
        if st is not None and "aggregation" in st.columns:
            return self._section(st)
        if not self.rb.has("staggered"):
            return not_run("staggered")
        return (
            "\nReferrals happened at different times; the staggered-adoption estimator "
            "(Callaway and Sant'Anna 2021) compares each referral cohort only with people not yet "
            "or never referred, avoiding the bias of two-way fixed effects with staggered timing.\n"
            + self.rb.table_md(
                "staggered", caption="Staggered difference-in-differences estimates", digits=3
            )
        )

    def _section(self, st: pd.DataFrame) -> str:
        period = self._period()
        parts = [self._design(), *self._pretrend_text()]
        parts.append(
            self.rb.figure_md(
                "staggered_event_study",
                caption=f"Change in NHS use per person per {period}, by {period}s since first "
                "treatment (95% confidence intervals)",
                alt="Event-study chart of the staggered difference-in-differences",
            )
        )
        parts.append(self._simple_table())
        parts += self._dynamic_table(st)
        parts.append(
            self.rb.table_md(
                "staggered_pretrend",
                caption="Joint Wald test that the pre-treatment effects are zero "
                "(Callaway-Sant'Anna event-study leads)",
                digits={"statistic": 1, "p_value": 3},
            )
        )
        parts.append(
            self.rb.figure_md(
                "staggered_trends",
                caption=f"Mean NHS use per person per {period}: people ever referred and people "
                "never referred",
                alt="Line chart of mean NHS use over the study window",
            )
        )
        parts += self._notes()
        return "\n".join(parts)

    def _pretrend_text(self) -> list[str]:
        """The section's sentence on pre-trends: failed, not computable, or parallel."""
        bad = self._pretrend_failures()
        if bad:
            return [
                WARN + "The joint pre-trend test **failed** for " + ", ".join(bad) + f" (p < "
                f"{ALPHA}): before first treatment the treated people's use was already "
                "diverging from the comparators'. A rise just before referral followed by a "
                "fall is the signature of referral at a peak of use (regression to the mean); "
                "the post-referral estimates then overstate any reduction.\n:::\n"
            ]
        pt = self.rb.table("staggered_pretrend")
        if pt is None or not len(pt):
            return []
        p = pd.to_numeric(pt["p_value"], errors="coerce")
        what = (
            f"joint Wald test of the {pt['test'].iloc[0]}"
            if "test" in pt.columns and isinstance(pt["test"].iloc[0], str)
            else "joint pre-trend test"
        )
        if p.isna().all():
            why = pt["note"].dropna().astype(str) if "note" in pt.columns else pd.Series([])
            return [
                f"\nThe {what} could not be computed"
                + (f" ({why.iloc[0]})" if len(why) and why.iloc[0] else "")
                + ": read the pre-treatment estimates of the event study instead.\n"
            ]
        return [
            "\nBefore first treatment the treated and comparison groups moved in "
            f"parallel ({what}: p ≥ {ALPHA}).\n"
        ]

    def _simple_table(self) -> str:
        """The overall effect of each outcome and estimator (simple aggregation)."""
        cols = [
            "outcome",
            "estimator",
            "estimate",
            "std_error",
            "conf_low",
            "conf_high",
            "p_value",
            "n",
            "scale",
        ]
        main = self._main()
        return markdown_table(
            main[[c for c in cols if c in main.columns]],
            caption="Overall effect after first treatment (simple aggregation; n = treated people)",
            label="tbl-staggered-simple",
            digits={"estimate": 3, "std_error": 3, "conf_low": 3, "conf_high": 3, "p_value": 3},
        )

    def _dynamic_table(self, st: pd.DataFrame) -> list[str]:
        """Dynamic effects by periods since first treatment, outcomes and estimators across."""
        period = self._period()
        dyn = st.loc[st["aggregation"] == "dynamic"].copy()
        if not len(dyn):
            return []
        dyn["cell"] = [
            "0 (reference)"
            if r["estimate"] == 0 and pd.isna(r["std_error"])
            else NOT_AVAILABLE
            if pd.isna(r["estimate"])
            else f"{_f(r['estimate'], 3)} ({_f(r['conf_low'], 3)} to {_f(r['conf_high'], 3)})"
            for _, r in dyn.iterrows()
        ]
        dyn["column"] = [
            f"{outcome_label(o)}, {e}"
            for o, e in zip(dyn["outcome"], dyn["estimator"], strict=True)
        ]
        wide = dyn.pivot_table(
            index="event", columns="column", values="cell", aggfunc="first", sort=False
        ).reset_index()
        wide["event"] = pd.to_numeric(wide["event"]).astype(int)
        wide = wide.rename(columns={"event": f"{period.capitalize()}s since treatment"})
        return [
            markdown_table(
                wide.fillna(NOT_AVAILABLE),
                caption=f"Dynamic effects by {period}s since first treatment: estimate (95% CI)",
                label="tbl-staggered-dynamic",
            )
        ]

    def _notes(self) -> list[str]:
        """Cohort sizes and what was not estimated, or estimated at a limit."""
        parts: list[str] = []
        if self.rb.has("staggered_cohorts"):
            parts.append(
                self.rb.table_md(
                    "staggered_cohorts",
                    caption="Treated people by cohort (period first treated; rounded)",
                    columns=["cohort", "n"],
                )
            )
        notes = self.rb.table("staggered_notes")
        if notes is not None and len(notes):
            parts.append(
                "\n*Not estimated:* "
                + "; ".join(
                    f"{r['estimator']} for {outcome_label(r['outcome'])} ({r['note']})"
                    for _, r in notes.iterrows()
                )
                + "\n"
            )
        fit_notes = self.rb.table("staggered_fit_notes")
        if fit_notes is not None and len(fit_notes):
            parts.append(
                "\n*Cells with no events (Poisson model; the estimate is at its limit there):* "
                + "; ".join(
                    f"{r['estimator']} for {outcome_label(r['outcome'])}, {r['note']}"
                    for _, r in fit_notes.iterrows()
                )
                + ".\n"
            )
        return parts
