# Golden pairs/ATT/SMDs for spevidence.match.nearest on the LaLonde data, to be run
# where R and MatchIt >= 4.7 are installed (Debian's r-cran-matchit 4.5.1 has a
# known bug: build MatchIt from its source repository). It writes
# match_lalonde_matchit_<case>.csv (treated id, control id(s)) and
# match_lalonde_matchit_balance_<case>.csv. NOT yet run: R is not available on the
# build machines; tests/test_match_nearest.py uses these files when present.
library("MatchIt")
data("lalonde", package = "MatchIt")
f <- treat ~ age + educ + race + married + nodegree + re74 + re75
cases <- list(
  nocaliper = list(),
  caliper_linear_logit = list(link = "linear.logit", caliper = 0.2),
  caliper_ps = list(caliper = 0.2),
  ratio2 = list(ratio = 2),
  replace = list(replace = TRUE)
)
for (nm in names(cases)) {
  m <- do.call(matchit, c(list(formula = f, data = lalonde, method = "nearest"), cases[[nm]]))
  mm <- m$match.matrix
  write.csv(data.frame(treated = rownames(mm), mm), sprintf("match_lalonde_matchit_%s.csv", nm),
            row.names = FALSE)
  s <- summary(m)
  write.csv(s$sum.matched, sprintf("match_lalonde_matchit_balance_%s.csv", nm))
  md <- match_data(m)
  fit <- lm(re78 ~ treat, data = md, weights = weights)
  v <- sandwich::vcovCL(fit, cluster = if (is.null(md$subclass)) NULL else ~subclass)
  write.csv(data.frame(att = coef(fit)[2], se = sqrt(v[2, 2])),
            sprintf("match_lalonde_matchit_att_%s.csv", nm), row.names = FALSE)
}
