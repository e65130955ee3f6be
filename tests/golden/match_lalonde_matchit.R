# Golden numbers for spevidence.match.nearest on the LaLonde data, made by real R +
# MatchIt (tests/test_match_lalonde_golden.py compares against them; the tests do
# not need R).
#
# How R and MatchIt were obtained (Debian 12 "bookworm", 2026-11-23):
#   apt-get install r-base-core r-base-dev r-cran-rcpp r-cran-rcppprogress \
#     r-cran-backports r-cran-rlang r-cran-lifecycle r-cran-sandwich
#   -> R 4.2.2 (Debian 4.2.2.20221110-2), Rcpp 1.0.10, RcppProgress 0.4.2,
#      backports 1.4.1, sandwich 3.0-2.
#   MatchIt needs chk (>= 0.10.0, not packaged by Debian) and rlang (>= 1.1.0,
#   Debian has 1.0.6); both were built from their CRAN source mirrors on GitHub:
#     github.com/cran/chk   commit 9eae978edaeb3b43163b8ae88c2566061d3daa64 (chk 0.10.0)
#     github.com/cran/rlang commit 0ef57de4b64ee56b73954e12b8cb973b18a5a12b (rlang 1.2.0)
#   MatchIt 4.7.2 from its source repository (NOT Debian's r-cran-matchit 4.5.1,
#   which has a known bug):
#     github.com/kosukeimai/MatchIt commit bccb2fcba7a344be061530d8180ec9b78097b414
#   each exported with `git archive HEAD | tar -x` and installed with
#     R CMD INSTALL -l <lib> rlang chk MatchIt
#   (compiled with Debian's GCC 12 / libstdc++).
# Run from this folder:  R_LIBS=<lib> Rscript match_lalonde_matchit.R
#
# Writes (all numbers at R's full 15 significant digits):
#   match_lalonde_matchit_pairs.csv    case, treated id, k (column of match.matrix),
#                                      control id ("" = no match)
#   match_lalonde_matchit_balance.csv  case, sample (all/matched), variable, and
#                                      summary.matchit's columns
#   match_lalonde_matchit_att.csv      case, caliper (distance units), sample sizes,
#                                      ATT of re78 (lm on match_data, weights) and its
#                                      SE (sandwich::vcovCL clustered on subclass;
#                                      by unit, i.e. HC1, with replacement)
library("MatchIt")
library("sandwich")
data("lalonde", package = "MatchIt")
f <- treat ~ age + educ + race + married + nodegree + re74 + re75
cases <- list(
  nocaliper = list(),
  caliper_linear_logit = list(link = "linear.logit", caliper = 0.2),
  caliper_ps = list(caliper = 0.2),
  ratio2 = list(ratio = 2),
  ratio2_caliper_linear_logit = list(ratio = 2, link = "linear.logit", caliper = 0.2),
  replace = list(replace = TRUE),
  mahalanobis_replace = list(distance = "mahalanobis", replace = TRUE),
  # Mahalanobis on four covariates within a caliper of 0.2 SD of the propensity
  # score (what risk_set(distance="mahalanobis", caliper=...) does per stratum)
  mahvars_caliper_ps = list(mahvars = ~ age + educ + re74 + re75, caliper = 0.2,
                            m.order = "data")
)
pairs <- list()
bal <- list()
att <- list()
for (nm in names(cases)) {
  m <- do.call(matchit, c(list(formula = f, data = lalonde, method = "nearest"), cases[[nm]]))
  mm <- m$match.matrix
  for (k in seq_len(ncol(mm))) {
    ctrl <- mm[, k]
    pairs[[length(pairs) + 1]] <- data.frame(
      case = nm, treated = rownames(mm), k = k,
      control = ifelse(is.na(ctrl), "", ctrl)
    )
  }
  s <- summary(m, un = TRUE)
  for (sample in c("all", "matched")) {
    tab <- if (sample == "all") s$sum.all else s$sum.matched
    df <- data.frame(case = nm, sample = sample, variable = rownames(tab), tab,
                     check.names = FALSE)
    if (!"Std. Pair Dist." %in% names(df)) df[["Std. Pair Dist."]] <- NA
    bal[[length(bal) + 1]] <- df
  }
  md <- match_data(m)
  fit <- lm(re78 ~ treat, data = md, weights = weights)
  v <- vcovCL(fit, cluster = if (is.null(md$subclass)) NULL else ~subclass)
  nn <- s$nn
  cal <- if (is.null(m$caliper)) NA else unname(m$caliper[1])
  att[[length(att) + 1]] <- data.frame(
    case = nm, caliper = cal,
    n_matched_treated = nn["Matched", "Treated"],
    n_matched_control = nn["Matched", "Control"],
    ess_control = nn["Matched (ESS)", "Control"],
    att = unname(coef(fit)[2]), se = sqrt(v[2, 2])
  )
}
opts <- options(digits = 15)
write.csv(do.call(rbind, pairs), "match_lalonde_matchit_pairs.csv", row.names = FALSE)
write.csv(do.call(rbind, bal), "match_lalonde_matchit_balance.csv", row.names = FALSE)
write.csv(do.call(rbind, att), "match_lalonde_matchit_att.csv", row.names = FALSE)
options(opts)
cat(R.version.string, "; MatchIt", format(packageVersion("MatchIt")), "\n")
