"""``spevidence.pipeline.matched_cohort``: every protocol matching option reaches the match.

The protocol-driven matching used to be written out in the pipeline, a slow test, a
benchmark and an analysis; copies outside the pipeline lost ``comparator_pcns``. Now all
call ``matched_cohort``. These checks use a protocol that sets every ``match:`` option
and test what each one must do to the matched data.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from spevidence.data import read_extracts, validate
from spevidence.match import risk_set
from spevidence.pipeline import matched_cohort, matching_panel
from spevidence.protocol import load_protocol
from spevidence.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def panel_and_proto(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("mc") / "data"
    generate("demo", persons=4000, seed=5, out=data, identifiers="pseudonym", progress=False)
    proto = load_protocol(ROOT / "protocols" / "demo.yaml").model_copy(update={"ids": "pseudonym"})
    clean, _, _ = validate(read_extracts(data), start=proto.start, end=proto.end)
    panel, _ = matching_panel(clean, proto)
    return panel, proto


def _with_match(proto, **update):  # type: ignore[no-untyped-def]
    return proto.model_copy(update={"match": proto.match.model_copy(update=update)})


def test_every_match_option_reaches_the_matching(panel_and_proto) -> None:  # type: ignore[no-untyped-def]
    panel, proto = panel_and_proto
    pcns = sorted(panel["pcn_code"].unique())
    donors = tuple(pcns[: len(pcns) // 2])
    p = _with_match(
        proto,
        comparators="comparator-pcns",
        comparator_pcns=donors,
        exact=("sex",),
        eligibility=("prior_gp > 3",),
        ratio=2,
        replace=True,
        caliper=0.5,
        lookback=6,
        censoring="none",
        washout=0,
        prior_referrals="keep",  # "exclude" (the default) is the next test's
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, md = matched_cohort(panel, p)
        # the same call written out by hand gives the same pairs
        direct = risk_set(
            panel,
            exact=("sex",),
            covariates=list(p.match.covariates),
            ratio=2,
            caliper=0.5,
            replace=True,
            comparators="comparator-pcns",
            comparator_pcns=donors,
            lookback=6,
            eligibility=("prior_gp > 3",),
            seed=p.seed,
        )
    pd.testing.assert_frame_equal(md, direct.matched_data(censoring="none"))
    at_index = md.loc[md["event_time"] == 0]
    cmp_ = at_index.loc[at_index["treated"] == 0]
    assert len(cmp_) > 0
    # comparators come only from the donor PCNs, and met the eligibility rule
    assert set(cmp_["pcn_code"]) <= set(donors)
    # prior_gp = GP appointments in the lookback (6) periods before the index period
    before = md.loc[md["event_time"].between(-6, -1)]
    prior = before.groupby("unit_id")["gp"].sum().reindex(md["unit_id"].unique(), fill_value=0)
    assert (prior > 3).all(), prior.min()
    # censoring "none": no weights below or above one from IPCW
    assert (md["weights"].loc[md["treated"] == 1] == 1).all()


def test_censoring_option_changes_the_matched_data(panel_and_proto) -> None:  # type: ignore[no-untyped-def]
    panel, proto = panel_and_proto
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, none = matched_cohort(panel, _with_match(proto, censoring="none"))
        _, ref = matched_cohort(panel, _with_match(proto, censoring="referral"))
        _, ipcw = matched_cohort(panel, _with_match(proto, censoring="ipcw"))
    # plain censoring drops comparator months after their own referral; IPCW drops the
    # same months and reweights the rest
    assert len(ref) < len(none)
    assert len(ipcw) == len(ref)
    assert not ipcw["weights"].equals(ref["weights"])


def test_earlier_referrals_of_any_outcome_leave_the_risk_set(panel_and_proto) -> None:  # type: ignore[no-untyped-def]
    """With prior_referrals: exclude a person referred before (declined or not taken up)
    is neither a case nor a comparator from then on (the default); keep keeps them."""
    from spevidence.match.risk_set import REASON_PRIOR_REFERRAL

    panel, proto = panel_and_proto
    # referred_before switches on after the first referral of any outcome, never before
    first_acc = panel.groupby("person_id")["referral_t"].first()
    on = panel.loc[panel["referred_before"] == 1].groupby("person_id")["t"].min()
    assert len(on) > 0
    acc = first_acc.reindex(on.index)
    # accepted-first people switch on in the period after their referral at the latest
    assert ((on <= acc + 1) | acc.isna()).all()
    assert acc.isna().sum() > 0  # referred, never accepted: the test has teeth
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res, md = matched_cohort(
            panel, _with_match(proto, censoring="none", prior_referrals="exclude")
        )
        res_keep, md_keep = matched_cohort(
            panel, _with_match(proto, censoring="none", prior_referrals="keep")
        )
    rb = panel.set_index(["person_id", "t"])["referred_before"]

    def at_index(m):  # type: ignore[no-untyped-def]
        idx = m.loc[m["event_time"] == 0]
        keys = list(zip(idx["person_id"], idx["t"], strict=True))
        return idx.assign(rb=rb.reindex(keys).to_numpy())

    excl, keep = at_index(md), at_index(md_keep)
    assert (excl["rb"] == 0).all()
    assert (keep.loc[keep["treated"] == 0, "rb"] == 1).any()

    def prior(r):  # type: ignore[no-untyped-def]
        a = r.attrition
        return int(a.loc[a["reason"] == REASON_PRIOR_REFERRAL, "n"].sum())

    # cases whose first referral was not the accepted one are counted, not matched
    assert prior(res) == int((keep.loc[keep["treated"] == 1, "rb"] == 1).sum())
    assert prior(res_keep) == 0


def test_a_case_referred_before_is_counted_under_its_own_reason(panel_and_proto) -> None:  # type: ignore[no-untyped-def]
    from spevidence.match.risk_set import REASON_INELIGIBLE, REASON_PRIOR_REFERRAL

    panel, proto = panel_and_proto
    first = panel.groupby("person_id")["referral_t"].first().dropna()
    # mark three referred people as referred before their accepted referral
    who = first.index[:3]
    p = panel.copy()
    p.loc[p["person_id"].isin(who), "referred_before"] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        excl = _with_match(proto, censoring="none", prior_referrals="exclude")
        res, md = matched_cohort(p, excl)
        res0, _ = matched_cohort(panel, excl)
    a, a0 = res.attrition.set_index("reason")["n"], res0.attrition.set_index("reason")["n"]
    lost = a[REASON_PRIOR_REFERRAL] - a0[REASON_PRIOR_REFERRAL]
    assert 1 <= lost <= 3  # those with a panel row and the look-back reach this check
    assert a[REASON_INELIGIBLE] == a0[REASON_INELIGIBLE]
    assert not set(md.loc[md["treated"] == 1, "person_id"]) & set(who)


def test_exclude_without_the_column_is_a_clear_error(panel_and_proto) -> None:  # type: ignore[no-untyped-def]
    from spevidence.errors import DataError

    panel, proto = panel_and_proto
    with pytest.raises(DataError, match="needs the panel column 'referred_before'"):
        matched_cohort(
            panel.drop(columns="referred_before"), _with_match(proto, prior_referrals="exclude")
        )
