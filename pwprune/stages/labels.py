"""The one-line job descriptions that lead each job's log and its progress lines ("experiment
default, pruning taylor to 0.5, seed 0"), built from the job's wildcards.

Log text only: nothing here reaches a result, so this module is left out of the rules' code
hashes (pwprune.provenance.LOG_TEXT_ONLY) and rewording a label reruns nothing. It imports
nothing from pwprune, and a test holds it to returning plain strings.
"""


def train_dense(w) -> str:
    return f"experiment {w.exp}, dense training, seed {w.seed}"


def prune(w) -> str:
    return f"experiment {w.exp}, pruning {w.method} to {w.target}, seed {w.seed}"


def finetune(w) -> str:
    return f"experiment {w.exp}, fine-tuning {w.method}-{w.ploss} at {w.target} with {w.floss}, seed {w.seed}"
