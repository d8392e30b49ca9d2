"""The minimal detectable paired difference (pwprune.power, issue 29 item 4), checked against a
simulation of the paired t-test and against the textbook figures."""

import math

import numpy as np
import pytest
from scipy import stats

from pwprune.power import minimal_detectable_difference, paired_t_power

# The exact MDE in sd units, two-sided α 0.05, power 0.8, n pairs (G*Power, one-sample/matched
# pairs t-test, "sensitivity": effect size dz = 3.2640 at n = 3 and 1.6820 at n = 5). The
# simulation below confirms both.
DZ = {3: 3.264043549699574, 5: 1.6819969659555547}


def simulated_power(delta, sd, n, draws=20_000, seed=0):
    """Share of `draws` simulated experiments (n paired normal differences, mean delta, sd) in
    which scipy's one-sample t-test of the differences gives p < 0.05."""
    d = np.random.default_rng(seed).normal(delta, sd, size=(draws, n))
    return float(np.mean(stats.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05))


@pytest.mark.parametrize("n", [3, 5, 10])
def test_the_mde_is_detected_80_percent_of_the_time_in_a_simulation(n):
    sd = 0.025  # 2.5 pp, in fractions like the summary
    mde = minimal_detectable_difference(sd, n)
    assert simulated_power(mde, sd, n) == pytest.approx(0.8, abs=0.01)
    assert paired_t_power(mde, sd, n) == pytest.approx(0.8, abs=1e-9)
    # a third less is missed far more often: the MDE is not just any detectable difference
    assert simulated_power(2 / 3 * mde, sd, n) < 0.6


def test_textbook_figures_and_the_large_sample_limit():
    for n, dz in DZ.items():
        assert minimal_detectable_difference(1.0, n) == pytest.approx(dz, rel=1e-6)
    # n = 5: the t-quantile shortcut (t_.975 + t_.8) / sqrt(n) is a little low, the normal one
    # (1.96 + 0.84) / sqrt(n) much too low (its true power is 0.56)
    shortcut = (stats.t.ppf(0.975, 4) + stats.t.ppf(0.8, 4)) / math.sqrt(5)
    assert shortcut == pytest.approx(1.6625, abs=1e-4) and paired_t_power(shortcut, 1.0, 5) < 0.795
    assert paired_t_power(2.8016 / math.sqrt(5), 1.0, 5) == pytest.approx(0.564, abs=0.001)
    # for many pairs it is the normal approximation (z_.975 + z_.8) sd / sqrt(n)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)  # 2.8016
    assert minimal_detectable_difference(3.0, 10_000) == pytest.approx(z * 3.0 / 100, rel=1e-3)


def test_linear_in_sd_falling_with_n_and_nan_without_a_test():
    base = minimal_detectable_difference(1.0, 5)
    for sd in (0.01, 0.3, 7.0):
        assert minimal_detectable_difference(sd, 5) == pytest.approx(sd * base, rel=1e-12)
    mdes = [minimal_detectable_difference(0.05, n) for n in range(2, 31)]
    assert all(a > b for a, b in zip(mdes, mdes[1:]))
    assert minimal_detectable_difference(0.05, 2) > 10 * 0.05  # one degree of freedom: very weak
    for sd, n in ((1.0, 1), (1.0, 0), (math.nan, 5), (math.inf, 5), (1.0, math.nan), (None, 5)):
        assert math.isnan(minimal_detectable_difference(sd, n))
    assert minimal_detectable_difference(0.0, 5) == 0.0
    # another level and power: smaller α or higher power need a larger difference
    assert minimal_detectable_difference(1.0, 5, alpha=0.01) > base
    assert minimal_detectable_difference(1.0, 5, power=0.9) > base
    with pytest.raises(ValueError):
        minimal_detectable_difference(-1.0, 5)
    with pytest.raises(ValueError):
        minimal_detectable_difference(1.0, 5, alpha=0.05, power=0.01)
