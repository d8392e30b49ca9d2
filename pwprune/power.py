"""The power of the summary's paired t-tests: the minimal detectable paired difference (MDE).

A paired t-test that finds nothing with a handful of seeds says little unless one knows how large
a difference it could have found. The MDE is the smallest true mean paired difference |δ| that
the two-sided paired t-test (level alpha) over n pairs detects with probability `power`, when the
paired differences are normal with standard deviation sd.

It is solved exactly, not with the usual approximation. The test statistic is noncentral t with
n − 1 degrees of freedom and noncentrality λ = δ·sqrt(n)/sd, and its power is
P(|T| > t_{1−α/2, n−1}) (both tails). The λ at which that reaches `power` is found by root
search (scipy.optimize.brentq on scipy.stats.nct), and MDE = λ·sd/sqrt(n). The approximations are
too optimistic at the seed counts pwprune runs. At n = 5, α 0.05 and power 0.8 the exact MDE is
1.682 sd. (t_{0.975,4} + t_{0.8,4})·sd/sqrt(5) gives 1.662 sd, whose power is 0.79. The normal
(1.96 + 0.84)·sd/sqrt(5) gives 1.253 sd, whose power is 0.56. All three agree as n grows.

The sd is the sample sd of the observed paired differences, used as if it were the true one: with
few seeds it is itself uncertain, so the MDE is a plug-in estimate of the test's reach, not a bound.
"""

import math
from functools import lru_cache

from scipy import optimize, stats


def _two_sided_power(noncentrality, df, alpha):
    """P(|T| > t_{1−alpha/2, df}) for T noncentral t (df, noncentrality). The lower tail is
    taken as the upper tail at −noncentrality: scipy's nct.cdf far in the lower tail can be NaN."""
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, noncentrality) + stats.nct.sf(crit, df, -noncentrality))


def paired_t_power(delta, sd, n, alpha=0.05):
    """Power of the two-sided paired t-test over n pairs at level alpha when the paired
    differences are normal with mean delta and sd `sd` (> 0)."""
    if not (sd > 0 and n >= 2):
        raise ValueError(f"paired_t_power needs sd > 0 and n >= 2, got sd={sd}, n={n}")
    return _two_sided_power(delta * math.sqrt(n) / sd, int(n) - 1, alpha)


@lru_cache(maxsize=None)
def _noncentrality(df, alpha, power):
    """The noncentrality λ >= 0 at which the two-sided t-test with df degrees of freedom has the
    given power (λ = 0 gives power alpha; the power rises with λ)."""
    hi = stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)  # the approximation: a bit low
    while _two_sided_power(hi, df, alpha) < power:
        hi *= 2
    return optimize.brentq(lambda lam: _two_sided_power(lam, df, alpha) - power, 0.0, hi, xtol=1e-12)


def minimal_detectable_difference(sd, n, alpha=0.05, power=0.8):
    """The smallest true mean paired difference that a two-sided paired t-test at level `alpha`
    over `n` pairs detects with probability `power`, for paired differences of sd `sd`. It is
    exact, from the noncentral t distribution (see the module docstring). The result is in the
    unit of sd and linear in it. NaN where n < 2 or sd is not finite; 0 where sd is 0."""
    if not (0 < alpha < 1 and alpha < power < 1):
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")
    try:
        sd, n = float(sd), float(n)
    except (TypeError, ValueError):
        return math.nan
    if not (math.isfinite(sd) and math.isfinite(n)) or n < 2:
        return math.nan
    if sd < 0:
        raise ValueError(f"a standard deviation cannot be negative, got {sd}")
    n = int(n)
    lam = _noncentrality(n - 1, float(alpha), float(power))
    return lam * sd / math.sqrt(n)
