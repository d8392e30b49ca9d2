# Dense teacher outputs on the training split -> can the PW loss act at all? A per-seed table
# of PW weights, teacher accuracy and soft-target share per label x group cell, with a WARNING
# in the job log when PW will act like CE (pwprune.diagnostics). Seconds of CPU; it reruns when
# a PW setting changes, dense training does not.


rule teacher_diagnostic:
    input:
        data=PREP,
        teacher=f"{DENSE}/teacher.pt",
    output:
        csv=f"{DENSE}/teacher_diagnostic.csv",
    params:
        settings=lambda w: pw_setting_list(exp_cfg(w)),
        seed=lambda w: int(w.seed),
        code=CODE["teacher_diagnostic.py"],
    log:
        f"{LOGS}/teacher_diagnostic.log",
    benchmark:
        f"{BENCH}/teacher_diagnostic.tsv"
    threads: 1
    # reads labels and cached logits only (no images, no model): seconds, so it stays off the
    # cluster queue like the report rules
    localrule: True
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/pwprune.yaml"
    script:
        "../scripts/teacher_diagnostic.py"
