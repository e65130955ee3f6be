# Produces the numbers in match_matchit_readme.json (MatchIt's own README example).
# Source: README.Rmd of github.com/kosukeimai/MatchIt (commit bccb2fc); the printed
# output was transcribed from the knitted README.md, because R is not available on
# the machines that build spevidence.
library("MatchIt")
data("lalonde", package = "MatchIt")
m.out <- matchit(treat ~ age + educ + race + married +
                   nodegree + re74 + re75,
                 data = lalonde, distance = "mahalanobis",
                 replace = TRUE)
summary(m.out)
# The lalonde data itself (match_lalonde.csv) is MatchIt's data/lalonde.tab:
# write.csv(cbind(id = rownames(lalonde), lalonde), "match_lalonde.csv", row.names = FALSE)
