"""Service activity: numbers checked against independent pandas/statsmodels computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest_activity import pid, population, referrals
from statsmodels.stats.proportion import proportion_confint

from spevidence.activity import default_codelist, read_codelist, service_activity
from spevidence.errors import DataError

START, END = "2023-01-01", "2023-12-31"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    pop = population(400)
    return pop, referrals(pop, m=300)


@pytest.fixture(scope="module")
def result(data):
    pop, ref = data
    return service_activity(ref, start=START, end=END, population=pop)


def _in_window(ref: pd.DataFrame) -> pd.DataFrame:
    d = pd.to_datetime(ref["referral_date"], errors="coerce")
    ok = d.between(pd.Timestamp(START), pd.Timestamp(END)) & ref["outcome"].isin(
        ["accepted", "declined", "did_not_engage"]
    )
    return ref.loc[ok].assign(_d=d[ok])


def test_referrals_by_month_match_pandas(data, result):
    _, ref = data
    kept = _in_window(ref)
    t = result.tables()["activity_referrals_by_period"]
    assert len(t["period"].unique()) == 12  # empty months are present with zeros
    assert t["referrals"].sum() == len(kept)
    expect = kept.groupby([kept["_d"].dt.month, "referral_source"]).size()
    got = t.groupby([t["period"].dt.month, "referral_source"])["referrals"].sum()
    pd.testing.assert_series_equal(
        got.loc[expect.index].astype("int64"), expect.astype("int64"), check_names=False
    )
    q = service_activity(ref, start=START, end=END, period="quarter").tables()
    qt = q["activity_referrals_by_period"]
    assert sorted(qt["period"].dt.month.unique()) == [1, 4, 7, 10]
    assert qt.groupby(qt["period"].dt.quarter)["referrals"].sum().tolist() == (
        kept.groupby(kept["_d"].dt.quarter).size().tolist()
    )


def test_exclusions_reconcile(data, result):
    _, ref = data
    ex = result.tables()["activity_exclusions"]
    dropped = ex.loc[~ex["reason"].str.startswith("kept"), "rows"].sum()
    assert dropped + len(_in_window(ref)) == len(ref)
    assert ex.loc[ex["reason"].str.contains("not a date"), "rows"].item() == 1
    assert ex.loc[ex["reason"].str.startswith("outcome"), "rows"].item() == 1


def test_outcome_rates_and_wilson_intervals(data, result):
    _, ref = data
    kept = _in_window(ref)
    t = result.tables()["activity_outcomes"]
    labels = {"accepted": "Accepted", "declined": "Declined", "did_not_engage": "Did not engage"}
    for src in ["gp", "self"]:
        sub = kept.loc[kept["referral_source"] == src]
        for oc, label in labels.items():
            row = t.loc[(t["referral_source"] == src) & (t["outcome"] == label)].iloc[0]
            k = int((sub["outcome"] == oc).sum())
            assert row["n"] == k and row["referrals"] == len(sub)
            lo, hi = proportion_confint(k, len(sub), alpha=0.05, method="wilson")
            assert row["conf_low"] == pytest.approx(100 * lo, abs=1e-9)
            assert row["conf_high"] == pytest.approx(100 * hi, abs=1e-9)
    allrow = t.loc[t["referral_source"] == "All sources"]
    assert allrow["n"].sum() == len(kept)


def test_time_to_first_contact(data, result):
    _, ref = data
    kept = _in_window(ref)
    days = (pd.to_datetime(kept["first_contact_date"]) - kept["_d"]).dt.days
    valid = days[days >= 0]
    s = result.tables()["activity_time_to_contact"]
    row = s.loc[s["referral_source"] == "All sources"].iloc[0]
    assert row["referrals"] == len(valid)
    assert row["median_days"] == pytest.approx(np.median(valid))
    assert row["q1_days"] == pytest.approx(np.percentile(valid, 25))
    assert row["q3_days"] == pytest.approx(np.percentile(valid, 75))
    bands = result.tables()["activity_time_to_contact_bands"].set_index("days_to_first_contact")
    assert bands.loc["0-7 days", "referrals"] == int((valid <= 7).sum())
    assert bands.loc["57+ days", "referrals"] == int((valid >= 57).sum())
    no_fc = int((kept["first_contact_date"].isna() & (kept["outcome"] == "accepted")).sum())
    assert bands.loc["No first contact recorded", "referrals"] == no_fc
    ex = result.tables()["activity_exclusions"]
    assert ex.loc[ex["reason"].str.contains("first_contact"), "rows"].item() == int(
        (days < 0).sum()
    )


def test_contacts_against_norm(data, result):
    _, ref = data
    acc = _in_window(ref).query("outcome == 'accepted'")
    c = acc["contacts"]
    bands = result.tables()["activity_contacts_bands"].set_index("contacts")["referrals"]
    assert bands["6-12 contacts (norm)"] == int(c.between(6, 12).sum())
    assert bands["13+ contacts (above)"] == int((c > 12).sum())
    assert bands["1-5 contacts (below)"] == int(c.between(1, 5).sum())
    assert bands["0 contacts"] == int((c == 0).sum())
    assert bands["Not recorded"] == int(c.isna().sum())
    s = result.tables()["activity_contacts"].iloc[0]
    assert s["median_contacts"] == pytest.approx(c.dropna().median())
    assert s["within_norm"] == int(c.between(6, 12).sum())
    # a different norm moves people between bands
    alt = service_activity(ref, start=START, end=END, contacts_norm=(4, 8)).tables()
    b2 = alt["activity_contacts_bands"].set_index("contacts")["referrals"]
    assert b2["4-8 contacts (norm)"] == int(c.between(4, 8).sum())


def test_support_duration(data, result):
    _, ref = data
    acc = _in_window(ref).query("outcome == 'accepted'")
    fc = pd.to_datetime(acc["first_contact_date"])
    start = fc.where(fc.notna() & (fc >= acc["_d"]), acc["_d"])
    days = (pd.to_datetime(acc["discharge_date"]) - start).dt.days
    t = result.tables()["activity_support_duration"].set_index("support_duration")
    assert t.loc["Up to 4 weeks", "referrals"] == int(days.between(0, 28).sum())
    assert t.loc["1-3 months", "referrals"] == int(days.between(29, 91).sum())
    assert t.loc["3-6 months", "referrals"] == int(days.between(92, 182).sum())
    assert t["referrals"].sum() == len(acc)
    assert t["median_days"].iloc[0] == pytest.approx(days.median())


def test_caseload_per_wte(data):
    _, ref = data
    kept = _in_window(ref)
    wte = {"lw-alpha": 1.0, "lw-beta": 0.5, "lw-gamma": 0.8}
    t = service_activity(ref, start=START, end=END, link_worker_wte=wte).tables()[
        "activity_caseload"
    ]
    assert list(t["link_worker"]) == ["Link worker 1", "Link worker 2", "Link worker 3"]
    assert not t.astype(str).apply(lambda col: col.str.contains("lw-")).any().any()
    for i, lw in enumerate(sorted(wte)):
        acc = kept.loc[(kept["link_worker_id"] == lw) & (kept["outcome"] == "accepted")]
        people = acc["person_id"].nunique()
        row = t.iloc[i]
        assert row["people"] == people
        assert row["referrals"] == int((kept["link_worker_id"] == lw).sum())
        assert row["caseload_per_wte_year"] == pytest.approx(people * 365.25 / 365 / wte[lw])
        assert row["against_norm"] == "below"  # small test data: far below 200-250
    # one WTE value for all, and an invalid WTE
    t1 = service_activity(ref, start=START, end=END, link_worker_wte=0.25).tables()
    assert (t1["activity_caseload"]["wte"] == 0.25).all()
    with pytest.raises(DataError, match="positive"):
        service_activity(ref, start=START, end=END, link_worker_wte={"lw-alpha": 0.0})


def test_caseload_norm_classification():
    # 60 people accepted in 90 days by one worker at 0.5 WTE -> 60*365.25/90/0.5 = 487 a year
    ref = pd.DataFrame(
        {
            "person_id": [pid(i) for i in range(60)],
            "referral_date": pd.Timestamp("2024-01-01"),
            "referral_source": "gp",
            "outcome": "accepted",
            "link_worker_id": "w1",
        }
    )
    t = service_activity(
        ref, start="2024-01-01", end="2024-03-30", link_worker_wte={"w1": 0.5}
    ).tables()["activity_caseload"]
    assert t["caseload_per_wte_year"].item() == pytest.approx(60 * 365.25 / 90 / 0.5)
    assert t["against_norm"].item() == "above"
    t = service_activity(ref, start="2024-01-01", end="2024-03-30").tables()["activity_caseload"]
    assert t["wte_source"].item() == "assumed 1.0"
    assert t["against_norm"].item() == "within"  # 243.5 a year


def test_coding_audit(data, result):
    _, ref = data
    kept = _in_window(ref)
    audit = result.tables()["activity_coding_audit"]
    allr = audit.loc[audit["outcome"] == "All referrals"].set_index("coding")["n"]
    code = kept["snomed_code"]
    assert allr["Agreed code: Referral to social prescribing service"] == int(
        (code == "871731000000106").sum()
    )
    assert allr["Agreed code: Social prescribing declined"] == int(
        (code == "871711000000103").sum()
    )
    assert allr["Code outside the codelist"] == int((code == "1234567").sum())
    assert allr["No code recorded"] == int(code.isna().sum())
    dec = audit.loc[audit["outcome"] == "Declined"]
    assert dec["n"].sum() == int((kept["outcome"] == "declined").sum())
    other = result.tables()["activity_codes_outside_codelist"]
    assert other["snomed_code"].tolist() == ["1234567"]
    # a wider codelist moves the code into "agreed"
    cl = pd.concat(
        [default_codelist(), pd.DataFrame({"code": ["1234567"], "term": ["Local code"]})]
    )
    a2 = service_activity(ref, start=START, end=END, codelist=cl).tables()
    assert len(a2["activity_codes_outside_codelist"]) == 0


def test_codes_outside_codelist_never_release_identifier_shaped_values():
    ref = pd.DataFrame(
        {
            "person_id": [pid(i) for i in range(5)],
            "referral_date": "2024-01-10",
            "referral_source": "gp",
            "outcome": "accepted",
            # a valid NHS number, free text, a pseudonym, a real-looking SNOMED id, agreed code
            "snomed_code": ["9434765919", "see notes", pid(99), "1234567", "871731000000106"],
        }
    )
    t = service_activity(ref, start="2024-01-01", end="2024-01-31").tables()
    other = t["activity_codes_outside_codelist"].set_index("snomed_code")["referrals"]
    assert other.to_dict() == {"withheld: not a SNOMED CT identifier": 3, "1234567": 1}
    text = "".join(df.to_csv() for df in t.values())
    assert "9434765919" not in text and pid(99) not in text and "see notes" not in text


def test_shipped_codelist_csv_matches_builtin():
    csv = read_codelist(ROOT / "protocols" / "codelists" / "social_prescribing_snomed_v1.csv")
    assert list(csv.columns) == ["code", "term", "source", "version", "notes"]
    pd.testing.assert_frame_equal(csv, default_codelist())
    assert set(csv["code"]) == {"871731000000106", "871711000000103"}
    assert csv["notes"].str.contains("verified in the SNOMED CT browser").all()


def test_practice_from_spell_covering_referral_date():
    a, b = pid(1), pid(2)
    pop = pd.DataFrame(
        {
            "person_id": [a, a, b],
            "practice_code": ["A81001", "B82001", "A81002"],
            "pcn_code": ["U00001", "U00002", "U00001"],
            "registration_start": ["2010-01-01", "2023-06-01", "2024-01-01"],
            "registration_end": ["2023-05-31", None, None],
        }
    )
    ref = pd.DataFrame(
        {
            "person_id": [a, a, b],
            "referral_date": ["2023-03-01", "2023-08-01", "2023-02-01"],
            "referral_source": "gp",
            "outcome": "accepted",
        }
    )
    t = service_activity(ref, start="2023-01-01", end="2023-12-31", population=pop).tables()
    prac = t["activity_referrals_by_practice"].set_index("practice_code")["referrals"]
    assert prac.to_dict() == {"A81001": 1, "B82001": 1, "Not registered at referral": 1}
    ex = t["activity_exclusions"]
    assert ex.loc[ex["reason"].str.contains("no registration spell"), "rows"].item() == 1


def test_row_order_and_id_relabelling_do_not_change_tables(data):
    pop, ref = data
    base = service_activity(ref, start=START, end=END, population=pop).tables()
    perm = np.random.default_rng(7).permutation(len(ref))
    shuffled = ref.iloc[perm].reset_index(drop=True)
    relabel = {p: pid(10_000 + i) for i, p in enumerate(pop["person_id"])}
    pop2 = pop.assign(person_id=pop["person_id"].map(relabel))
    shuffled = shuffled.assign(person_id=shuffled["person_id"].map(relabel))
    other = service_activity(shuffled, start=START, end=END, population=pop2).tables()
    assert base.keys() == other.keys()
    for name in base:
        pd.testing.assert_frame_equal(base[name], other[name], obj=name)


def test_errors_name_table_and_column_not_ids(data):
    _, ref = data
    with pytest.raises(DataError) as e:
        service_activity(ref.drop(columns="outcome"), start=START, end=END)
    msg = str(e.value)
    assert "referrals" in msg and "outcome" in msg and str(len(ref)) in msg
    assert not any(p in msg for p in ref["person_id"])
    with pytest.raises(DataError, match="before start"):
        service_activity(ref, start=END, end=START)
    with pytest.raises(DataError, match="contacts_norm"):
        service_activity(ref, start=START, end=END, contacts_norm=(12, 6))


def test_optional_columns_absent():
    ref = pd.DataFrame(
        {
            "person_id": [pid(1), pid(2)],
            "referral_date": ["2024-01-02", "2024-02-03"],
            "referral_source": ["gp", "self"],
            "outcome": ["accepted", "declined"],
        }
    )
    r = service_activity(ref, start="2024-01-01", end="2024-03-31")
    assert set(r.tables()) == {
        "activity_referrals_by_period",
        "activity_outcomes",
        "activity_exclusions",
    }
    assert set(r.figures()) == {"activity_referrals_by_period", "activity_outcomes"}


def test_figures_drawn_from_given_tables(result):
    figs = result.figures()
    assert set(figs) == set(result.figure_names())
    assert "activity_caseload" in figs and "activity_coding_audit" in figs
    for name, fig in figs.items():
        ax = fig.axes[0]
        assert ax.get_title() and (ax.get_ylabel() or ax.get_xlabel()), name
    # redrawn from altered (e.g. rounded) tables: the bar heights follow the given table
    t = result.tables()
    t["activity_contacts_bands"]["referrals"] = [5, 10, 15, 20, 0]
    fig = result.plot("activity_contacts", tables=t)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [5, 10, 15, 20, 0]
