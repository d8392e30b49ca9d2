# Dense teacher outputs on the training split -> can the PW loss act at all? A per-seed table
# of PW weights, teacher accuracy and soft-target share per label x group cell, with a WARNING
# in the job log when PW will act like CE (pwprune.diagnostics). Seconds of CPU; it reruns when
# a PW setting changes, dense training does not.


def pw_setting_list(cfg):
    """Every distinct PW setting (min_weight, gamma) the experiment's methods use, with the
    methods that use it (ablation methods included)."""
    methods = list(cfg["prune"]["methods"]) + list((cfg.get("ablation") or {}).get("methods") or [])
    by_setting = {}
    for method in dict.fromkeys(methods):
        s = pc.pw_settings(cfg, method)
        by_setting.setdefault((float(s["min_weight"]), float(s["gamma"])), []).append(method)
    return [{"min_weight": m, "gamma": g, "methods": ms} for (m, g), ms in sorted(by_setting.items())]


rule teacher_diagnostic:
    input:
        data=PREP,
        teacher=DENSE + "/teacher.pt",
    output:
        csv=DENSE + "/teacher_diagnostic.csv",
    params:
        settings=lambda w: pw_setting_list(exp_cfg(w)),
        seed=lambda w: int(w.seed),
        code=CODE["diagnose"],
    log:
        LOGS + "/teacher_diagnostic.log",
    benchmark:
        BENCH + "/teacher_diagnostic.tsv"
    threads: 1
    # reads labels and cached logits only (no images, no model): seconds, so it stays off the
    # cluster queue like the report rules
    localrule: True
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/teacher_diagnostic.py"
