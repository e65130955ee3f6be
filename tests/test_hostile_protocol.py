"""Hostile protocols and command lines (issue 19, items 3, 8, 9, 12): `check` refuses
everything `run` would refuse, with a clear message and exit 1, never a traceback; the
CLI prints user text (paths, names) literally; `run` never writes into the data folder.

Each case is a protocol file (text or bytes) given to `check` and to `run`; the same
loader serves both, so `run` must stop at the same field before reading any data.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hostile import assert_clean, assert_no_partial_output, cli

BASE = "name: t\ntitle: t\nstart: 2021-04-01\nend: 2024-03-31\n"


def _with(**blocks: object) -> str:
    """The base protocol plus top-level ``blocks`` (as YAML)."""
    return BASE + yaml.safe_dump(blocks, sort_keys=False)


# A billion-laughs alias bomb where the model accepts any value (risk_score): six levels
# of nine aliases, 531,441 strings once expanded (nine levels made the old `check` print
# "Protocol is valid" after writing gigabytes); any alias is refused, whatever its size.
_BOMB = (
    BASE
    + "risk_score:\n  x0: &a0 [lol]\n"
    + "".join(f"  x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 7))
)

# (case id, protocol file content, what the message must say)
PROTOCOLS: list[tuple[str, str | bytes, tuple[str, ...]]] = [
    # 3. disclosure control switched off, or below the documented floor
    (
        "disclosure-off",
        _with(disclosure={"threshold": 0, "rounding": 1}),
        ("disclosure.threshold", "7"),
    ),
    ("disclosure-threshold-5", _with(disclosure={"threshold": 5}), ("disclosure.threshold", "7")),
    ("disclosure-rounding-1", _with(disclosure={"rounding": 1}), ("disclosure.rounding", "5")),
    # 8. tracebacks on the protocol
    ("impossible-date", BASE.replace("2021-04-01", "2023-02-30"), ("start", "date")),
    ("impossible-end-date", BASE.replace("2024-03-31", "2024-13-01"), ("end", "date")),
    ("binary-file", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00", ("UTF-8",)),
    ("nul-bytes-in-text", BASE + "description: a\x00b\n", ("not valid YAML",)),
    ("n-sims-huge", _with(sroi={"n_sims": 1_000_000_000}), ("sroi.n_sims", "100000")),
    ("did-pre-huge", _with(did={"pre": 100_000}), ("did.pre", "36")),
    ("did-window-huge", _with(did={"window": [-1_000_000, 12]}), ("did.window", "36")),
    ("deep-nesting", BASE + "description: " + "[" * 5000 + "]" * 5000 + "\n", ("nested",)),
    ("protocol-too-big", BASE + ("# padding\n" * 200_000), ("1 MB",)),
    ("not-a-mapping", "- a\n- b\n", ("mapping",)),
    ("python-tag", BASE + "seed: !!python/object/apply:os.system [echo]\n", ("not valid YAML",)),
    # 9. protocols that `check` passed and `run` rejected
    ("alias-bomb", _BOMB, ("alias",)),
    ("alias-merge", BASE + "x: &d {ratio: 2}\nmatch:\n  <<: *d\n", ("alias",)),
    ("unknown-cluster", _with(did={"cluster": "ward"}), ("did.cluster", "practice_code")),
    ("unknown-exact", _with(match={"exact": ["sex", "shoe_size"]}), ("match.exact", "shoe_size")),
    ("unknown-covariate", _with(match={"covariates": ["age", "hat"]}), ("match.covariates", "hat")),
    (
        "unknown-eligibility-column",
        _with(match={"eligibility": ["shoe_size > 3"]}),
        ("match.eligibility", "shoe_size"),
    ),
    ("unknown-risk-score-key", _with(risk_score={"bogus": 1}), ("risk_score", "bogus", "weights")),
    ("risk-score-weights-list", _with(risk_score={"weights": [1, 2]}), ("risk_score.weights",)),
    ("risk-score-bad-factor", _with(risk_score={"weights": {"hats": 1}}), ("hats",)),
    ("reversed-window", _with(did={"window": [12, -12]}), ("did.window", "before")),
    ("window-without-reference", _with(did={"window": [0, 12]}), ("did.window", "-1")),
    ("duplicate-key", BASE + "seed: 1\nseed: 2\n", ("duplicate", "'seed'", "line 6")),
    (
        "duplicate-nested-key",
        BASE + "did:\n  pre: 6\n  pre: 12\n",
        ("duplicate", "'pre'", "line 7"),
    ),
]


def _write(tmp_path: Path, content: str | bytes, name: str = "p.yaml") -> Path:
    f = tmp_path / name
    if isinstance(content, bytes):
        f.write_bytes(content)
    else:
        f.write_text(content, encoding="utf-8")
    return f


def _data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    return d


@pytest.mark.parametrize(
    ("content", "says"), [c[1:] for c in PROTOCOLS], ids=[c[0] for c in PROTOCOLS]
)
def test_check_refuses(tmp_path: Path, content: str | bytes, says: tuple[str, ...]) -> None:
    out = cli("check", _write(tmp_path, content), timeout=120)
    assert_clean(out, code=1, says=("Error:", *says))
    assert "Protocol is valid" not in out.text


@pytest.mark.parametrize(
    ("content", "says"), [c[1:] for c in PROTOCOLS], ids=[c[0] for c in PROTOCOLS]
)
def test_run_refuses_at_the_same_field(
    tmp_path: Path, content: str | bytes, says: tuple[str, ...]
) -> None:
    out_dir = tmp_path / "out"
    out = cli(
        "run", _write(tmp_path, content), "--data", _data(tmp_path), "--out", out_dir, timeout=120
    )
    assert_clean(out, code=1, says=("Error:", *says))
    assert_no_partial_output(out_dir)


def test_shipped_floor_values_still_pass(tmp_path: Path) -> None:
    """The floor is the documented default: 7 and 5 pass, stricter values too."""
    for threshold, rounding in ((7, 5), (10, 10)):
        f = _write(tmp_path, _with(disclosure={"threshold": threshold, "rounding": rounding}))
        out = cli("check", f)
        assert_clean(out, code=0, says=("Protocol is valid",))


# 8. brackets in a path or a name: printed literally, never read as rich markup
BRACKET_NAMES = ["a[/]b", "[red]x[/red]", "[bold", "x]"]


@pytest.mark.parametrize("name", BRACKET_NAMES)
def test_brackets_in_a_missing_path_are_shown_literally(tmp_path: Path, name: str) -> None:
    f = tmp_path / f"{name}.yaml"
    out = cli("check", f)
    assert_clean(out, code=1, says=(f"{name}.yaml", "not found"))


@pytest.mark.parametrize("name", BRACKET_NAMES)
def test_brackets_in_a_valid_protocol_name_and_path(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    folder.mkdir(parents=True)
    f = _write(folder, BASE.replace("name: t", f"name: '{name}'"))
    out = cli("check", f)
    assert_clean(out, code=0, says=(f"Protocol is valid: {name} ",))
    out = cli("init", folder / "new.yaml")
    assert_clean(out, code=0, says=(f"{name}/new.yaml",))


@pytest.mark.parametrize("name", BRACKET_NAMES)
def test_brackets_in_an_error_about_a_field(tmp_path: Path, name: str) -> None:
    f = _write(tmp_path, _with(match={"exact": ["sex", name]}))
    out = cli("check", f)
    assert_clean(out, code=1, says=("match.exact", name))


# 12. --out equal to or inside the data folder: the stage cache holds pseudonyms
@pytest.mark.parametrize("where", ["equal", "inside", "inside-via-dotdot"])
def test_run_refuses_out_in_the_data_folder(tmp_path: Path, where: str) -> None:
    data = _data(tmp_path)
    (data / "population.csv").write_text("person_id\n", encoding="utf-8")
    out_dir = {
        "equal": data,
        "inside": data / "results",
        "inside-via-dotdot": tmp_path / "elsewhere" / ".." / "data" / "r",
    }[where]
    before = sorted(p.name for p in data.iterdir())
    out = cli("run", "protocols/demo.yaml", "--data", data, "--out", out_dir)
    assert_clean(out, code=1, says=("--out", "data folder"))
    assert sorted(p.name for p in data.iterdir()) == before


def test_sroi_command_caps_n_sims(tmp_path: Path) -> None:
    eff = tmp_path / "effects.csv"
    eff.write_text("outcome,estimate,std_error\ngp,-0.1,0.05\n", encoding="utf-8")
    out = cli("sroi", eff, "--persons", "100", "--n-sims", "1000000000", "--out", tmp_path / "o")
    assert_clean(out, code=1, says=("--n-sims", "100,000"))
    assert not (tmp_path / "o").exists()
