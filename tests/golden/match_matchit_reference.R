# Produces the numbers in match_matchit_reference.json: the Examples section of
# MatchIt's ?matchit page, as rendered in MatchIt's repository
# (docs/reference/matchit.md, commit f9f89b38ddb5f377438ff38360de2358d4c9176a).
# Transcribed from that rendered output because R is not available here.
library("MatchIt")
data("lalonde")
m.out1 <- matchit(treat ~ age + educ + race + nodegree +
                    married + re74 + re75,
                  data = lalonde)
summary(m.out1)
m.out2 <- matchit(treat ~ age + educ + race + nodegree +
                    married + re74 + re75,
                  data = lalonde,
                  distance = "mahalanobis",
                  replace = TRUE,
                  exact = ~ married + race)
summary(m.out2, un = TRUE)
