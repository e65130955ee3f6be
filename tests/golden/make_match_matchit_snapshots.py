"""Extract MatchIt's nearest-neighbour snapshot match matrices into
match_matrix lists for match_matchit_snapshots.json.

Usage:
    python tests/golden/make_match_matchit_snapshots.py nearest_snapshots.md

``nearest_snapshots.md`` is MatchIt's tests/testthat/_snaps/nearest_snapshots.md
(github.com/kosukeimai/MatchIt, commit c708249317a92e6f96b8ad4b09a0a0c0be59e5bc),
written by testthat from tests/testthat/test-nearest_snapshots.R. Each test section
("# <test name>") holds three JSON blocks separated by "---": the match.matrix, the
weights and the subclass. This prints, for the sections named below, the first
block's "value" (column-major, null = no match) as JSON; the kwargs in the golden
file translate each test's matchit() call into spevidence.match.nearest options.
"""

from __future__ import annotations

import json
import re
import sys

SECTIONS = (
    "baseline: PS vector, m.order='largest' (default)",
    "baseline: Mahalanobis, m.order='data'",
    "PS vector, m.order='data'",
    "ratio=3, replace=FALSE (pool depletion)",
    "ratio=3, replace=TRUE (no pool depletion)",
    "ratio=2, positive caliper (pool restriction)",
    "caliper + replace=TRUE + ratio=2 (reuse within caliper)",
    "m.order='largest' + caliper + replace=FALSE",
    "exact + ratio=2 (within-stratum depletion)",
)


def main(path: str) -> None:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    parts = re.split(r"^# (.+)$", text, flags=re.MULTILINE)
    sections = dict(zip(parts[1::2], parts[2::2], strict=True))
    out = {}
    for name in SECTIONS:
        first_block = sections[name].split("\n---\n")[0]
        out[name] = json.loads(first_block)["value"]
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
