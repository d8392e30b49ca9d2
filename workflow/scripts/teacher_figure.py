from pwprune.diagnostics import read_diagnostics, teacher_figure
from pwprune.stages.jobs import job_log

with job_log(snakemake.log[0], exit_when_done=True) as log:
    out_stem = snakemake.output.png[: -len(".png")]
    paths = teacher_figure(read_diagnostics(snakemake.input), snakemake.wildcards.exp, out_stem)
    log(f"teacher_weights -> {', '.join(paths)}")
