"""The tidy table -> figures (pwprune.plots)."""

from __future__ import annotations


def _stem(png, pdf):
    stem = str(png)[: -len(".png")]
    if str(pdf) != stem + ".pdf":
        raise ValueError(f"figure outputs must share a stem: {png}, {pdf}")
    return stem


def plot_stage(figure, metrics_path, shares_path, experiment, png, pdf, convergence_path=None, log=print):
    """One figure of pwprune.plots; `convergence` reads convergence_path (results/convergence.csv),
    which the others do not need."""
    from pwprune import convergence, plots, summary

    metrics = summary.read_table(metrics_path)
    shares = summary.read_shares(shares_path)
    curves = None
    if figure == "convergence" and convergence_path is not None:
        curves = convergence.read_curves(convergence_path)
    paths = plots.make_figure(figure, metrics, shares, experiment, _stem(png, pdf), convergence_df=curves)
    log(f"wrote {', '.join(map(str, paths))}")


def variant_figure_stage(metrics_path, variant, base, png, pdf, log=print):
    from pwprune import plots, summary

    paths = plots.variant_comparison(summary.read_table(metrics_path), variant, base, _stem(png, pdf))
    log(f"wrote {', '.join(map(str, paths))}")
