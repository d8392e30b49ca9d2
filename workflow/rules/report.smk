# Every checkpoint's outputs + the latency files -> one tidy table (the metrics are computed there)
# -> figures, summary and the HTML report.
# Every rule here is a seconds-long pandas/matplotlib job: `localrule: True` keeps them off the
# cluster queue (they run where Snakemake runs) under --profile profiles/slurm.

MAIN_FIGURES = list(names.MAIN_FIGURES)  # pwprune.names: the figures drawn from the main table


MAIN_TABLE = run_table([r for e in ACTIVE for r in runs(e)])
ABLATION_TABLE = run_table([r for e in ACTIVE for r in ablation_runs(e)])
# the variants' table (results/variants/): every variant of an active experiment, beside its base
VARIANT_TABLE = run_table(variant_run_list())
TABLES = {"main": MAIN_TABLE, "ablation": ABLATION_TABLE, "variants": VARIANT_TABLE}


rule aggregate:
    input:
        outputs=table_inputs(MAIN_TABLE),
        latency=latency_files("main", MAIN_TABLE),
    output:
        metrics="results/metrics.csv",
        shares="results/loss_shares.csv",
        convergence="results/convergence.csv",
    params:
        table=MAIN_TABLE,
        code=CODE["aggregate.py"],
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/out/aggregate.tsv"
    threads: 1
    localrule: True
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/aggregate.py"


rule bootstrap:
    input:
        outputs_inputs(MAIN_TABLE),
    output:
        intervals="results/bootstrap.csv",
    params:
        table=MAIN_TABLE,
        code=CODE["bootstrap.py"],
    log:
        "logs/bootstrap.log",
    benchmark:
        "benchmarks/out/bootstrap.tsv"
    threads: 1
    localrule: True
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/bootstrap.py"


use rule aggregate as aggregate_ablation with:
    input:
        outputs=table_inputs(ABLATION_TABLE),
        latency=latency_files("ablation", ABLATION_TABLE),
    output:
        metrics="results/ablation/metrics.csv",
        shares="results/ablation/loss_shares.csv",
        convergence="results/ablation/convergence.csv",
    params:
        table=ABLATION_TABLE,
        code=CODE["aggregate.py"],
    log:
        "logs/aggregate_ablation.log",
    benchmark:
        "benchmarks/out/aggregate_ablation.tsv"


rule figure:
    input:
        metrics="results/metrics.csv",
        shares="results/loss_shares.csv",
        convergence="results/convergence.csv",
    output:
        # marked for the report in all_figures: a report caption cannot take wildcards
        png="results/figures/{exp}/{figure}.png",
        pdf="results/figures/{exp}/{figure}.pdf",
    wildcard_constraints:
        figure="|".join(MAIN_FIGURES),
    params:
        code=CODE["plot.py"],
    log:
        "logs/{exp}/figure_{figure}.log",
    benchmark:
        "benchmarks/out/{exp}/figure_{figure}.tsv"
    threads: 1
    localrule: True
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/plot.py"


use rule figure as figure_ablation with:
    input:
        metrics="results/ablation/metrics.csv",
        shares="results/ablation/loss_shares.csv",
    output:
        png=report(
            "results/figures/{exp}/{figure}.png",
            caption="../report/ablation.rst",
            category="{exp}",
            subcategory="ablation",
        ),
        pdf="results/figures/{exp}/{figure}.pdf",
    wildcard_constraints:
        figure="ablation",
    log:
        "logs/{exp}/figure_{figure}.log",
    benchmark:
        "benchmarks/out/{exp}/figure_{figure}.tsv"


rule teacher_figure:
    input:
        lambda w: teacher_diagnostics([w.exp]),
    output:
        png="results/figures/{exp}/teacher_weights.png",
        pdf="results/figures/{exp}/teacher_weights.pdf",
    params:
        code=CODE["teacher_figure.py"],
    log:
        "logs/{exp}/figure_teacher_weights.log",
    benchmark:
        "benchmarks/out/{exp}/figure_teacher_weights.tsv"
    threads: 1
    localrule: True
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/teacher_figure.py"


rule summary:
    input:
        metrics="results/metrics.csv",
        intervals="results/bootstrap.csv",
        convergence="results/convergence.csv",
        diagnostics=teacher_diagnostics(ACTIVE),
    output:
        md=report("results/summary.md", caption="../report/summary.rst", category="summary"),
        csv="results/summary.csv",
        fairness="results/fairness.csv",
        ranking="results/ranking.csv",
        headline="results/headline.json",
    params:
        experiments=ACTIVE,
        code=CODE["summary.py"],
    log:
        "logs/summary.log",
    benchmark:
        "benchmarks/out/summary.tsv"
    threads: 1
    localrule: True
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/summary.py"


rule all_figures:
    input:
        figures=report_figures(),
        summary="results/summary.md",
    output:
        "results/figures/all",
    log:
        "logs/all_figures.log",
    benchmark:
        "benchmarks/out/all_figures.tsv"
    threads: 1
    resources:
        mem_mb=100,
        runtime=1,
    localrule: True
    run:
        Path(output[0]).write_text("\n".join(sorted(input)) + "\n")


rule all_ablation:
    input:
        expand("results/figures/{exp}/ablation.{ext}", exp=[e for e in ACTIVE if ablation_runs(e)], ext=["png", "pdf"]),
        "results/ablation/metrics.csv",
    output:
        "results/ablation/all",
    log:
        "logs/all_ablation.log",
    benchmark:
        "benchmarks/out/all_ablation.tsv"
    threads: 1
    resources:
        mem_mb=100,
        runtime=1,
    localrule: True
    run:
        Path(output[0]).write_text("\n".join(sorted(input)) + "\n")


# Variants (issue 19): an experiment with `variant_of: <active experiment>` runs the base's
# grid for its own methods, targets, losses and seeds with other method options, on the base's
# dense models; results/variants/all compares the two, paired by seed.
use rule aggregate as aggregate_variants with:
    input:
        outputs=table_inputs(VARIANT_TABLE),
        latency=latency_files("variants", VARIANT_TABLE),
    output:
        metrics="results/variants/metrics.csv",
        shares="results/variants/loss_shares.csv",
        convergence="results/variants/convergence.csv",
    params:
        table=VARIANT_TABLE,
        code=CODE["aggregate.py"],
    log:
        "logs/aggregate_variants.log",
    benchmark:
        "benchmarks/out/aggregate_variants.tsv"


rule variant_summary:
    input:
        metrics="results/variants/metrics.csv",
    output:
        md="results/variants/summary.md",
        csv="results/variants/summary.csv",
    params:
        pairs=[list(p) for p in variants()],
        descriptions={v: EXPS[v].get("description", "") for v, _ in variants()},
        code=CODE["variant_summary.py"],
    log:
        "logs/variant_summary.log",
    benchmark:
        "benchmarks/out/variant_summary.tsv"
    threads: 1
    localrule: True
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/variant_summary.py"


rule variant_figure:
    input:
        metrics="results/variants/metrics.csv",
    output:
        png="results/figures/{exp}/variant_comparison.png",
        pdf="results/figures/{exp}/variant_comparison.pdf",
    params:
        base=lambda w: EXPS[w.exp]["variant_of"],
        code=CODE["variant_figure.py"],
    log:
        "logs/{exp}/figure_variant_comparison.log",
    benchmark:
        "benchmarks/out/{exp}/figure_variant_comparison.tsv"
    threads: 1
    localrule: True
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/variant_figure.py"


rule all_variants:
    input:
        expand("results/figures/{exp}/variant_comparison.{ext}", exp=[v for v, _ in variants()], ext=["png", "pdf"]),
        "results/variants/summary.md",
    output:
        "results/variants/all",
    log:
        "logs/all_variants.log",
    benchmark:
        "benchmarks/out/all_variants.tsv"
    threads: 1
    resources:
        mem_mb=100,
        runtime=1,
    localrule: True
    run:
        Path(output[0]).write_text("\n".join(sorted(input)) + "\n")
