"""Fixed values the protocol is checked against that the stages running it read too."""

from __future__ import annotations

MAX_SIMS = 100_000  # SROI Monte Carlo draws: each draw holds one value per outcome and year
# the GP trajectory the matched design's panel adds before matching (pipeline.matching_panel):
# name -> (a, b), the GP appointments over periods t-b .. t-a
TRAJECTORY = {"gp_m1_3": (1, 3), "gp_m4_6": (4, 6), "gp_m7_12": (7, 12)}
