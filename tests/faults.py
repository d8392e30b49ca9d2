"""Proof that the suite notices when the science is wrong.

Each fault below is a one-line change of behaviour in pwprune/ ("keep the weakest filters"),
given as the exact text it replaces (its anchor, which must occur exactly once in the file) and
the text that replaces it, plus the tests that should catch it. For every fault this script
copies the repository's source to a temporary directory, applies the fault there, runs the named
tests against the copy (PYTHONPATH points at it, so the tests, the Snakemake jobs they start and
every import see the faulty package) and requires that at least one of them fails.

    .venv/bin/python tests/faults.py               every fault
    .venv/bin/python tests/faults.py --list        the list, with the tests that catch each
    .venv/bin/python tests/faults.py --only NAME[,NAME]
    .venv/bin/python tests/faults.py --passed-in report.xml   (CI: after `pytest --junitxml=...`)
    .venv/bin/python tests/faults.py --no-fork     a new `python -m pytest` process per fault

The run pays for start-up once: this process imports the heavy libraries (torch, torchvision,
torch_pruning, numpy, pandas, matplotlib, scipy, ...: HEAVY below) but never pwprune or a test
module of the copy, and for each fault forks a child that moves into the copy, puts it first on sys.path
(and in PYTHONPATH, for the Snakemake jobs and other subprocesses the tests start) and runs
`pytest.main` on the named tests. The child checks that pwprune and the test helpers it imported
are the copy's, and fails loudly otherwise. `--no-fork` starts `python -m pytest` per fault
instead, as before (slower: ~130 imports of torch, pandas and matplotlib).

It first runs the union of the named tests on the unchanged copy, which must pass (else every
fault would look caught). With --passed-in, the selections that a JUnit XML report of a pytest
run on this same checkout shows as passed (every test case they select present and passed) are
taken as passed, and only the rest run: CI has just run the whole suite on this code, and
running the union again would cost it ~12 minutes. It exits non-zero when a fault survives, when a fault's anchor is not
found exactly once (the code moved: update the fault, never drop it silently), or when a fault
breaks the tests' collection instead of their assertions (that proves nothing about behaviour).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from helpers import copy_repo  # noqa: E402  (the same source copy the end-to-end tests use)

T = "tests/"


@dataclass(frozen=True)
class Fault:
    name: str
    behaviour: str
    path: str  # relative to the repository root
    anchor: str  # exact text, must occur exactly once
    replacement: str
    tests: tuple  # pytest node ids that should catch it


FAULTS = [
    # ---- intersectional groups and the images_csv kind (issues 14.3, 17.1)
    Fault(
        "group-product-order",
        "intersectional group names run in another order than the ids (last attribute slowest)",
        "pwprune/data/groups.py",
        "combos = [c + (i,) for c in combos for i in range(len(dom))]",
        "combos = [c + (i,) for i in range(len(dom)) for c in combos]",
        (
            T + "test_images_csv.py::test_combine_orders_the_product_first_attribute_slowest",
            T + "test_images_csv.py::test_prepare_names_shapes_and_labels_of_every_row",
        ),
    ),
    Fault(
        "csv-split-by-label-only",
        "images_csv's seeded split is stratified by label only, not by label x group",
        "pwprune/data/images_csv.py",
        "key = np.asarray(y, np.int64) * n_groups + np.asarray(g, np.int64)",
        "key = np.asarray(y, np.int64) * n_groups",
        (T + "test_images_csv.py::test_seeded_split_is_stratified_by_label_and_group_and_counted_in_meta",),
    ),
    Fault(
        "csv-path-escape-unchecked",
        "an images_csv path that climbs out of the image root is read",
        "pwprune/data/images_csv.py",
        "if os.path.commonpath([root, full]) != root:",
        "if False:",
        (T + "test_images_csv.py::test_refuses_a_path_that_escapes_the_image_root",),
    ),
    Fault(
        "csv-empty-split-cell-accepted",
        "a label x group cell with no image in a split is not refused",
        "pwprune/data/images_csv.py",
        "                if c[ci, k] == 0:",
        "                if False:",
        (T + "test_images_csv.py::test_refuses_a_label_group_cell_absent_from_a_split",),
    ),
    # ---- group-aware pruning baselines: FairGRAPE, FairPrune (issue 14, item 1)
    Fault(
        "fairgrape-feeds-the-richest-group",
        "FairGRAPE's greedy step lets the group furthest above its importance share pick next",
        "pwprune/pruning/fair.py",
        "k = min(range(k_groups), key=lambda j: (share[j] - target[j], j))",
        "k = max(range(k_groups), key=lambda j: (share[j] - target[j], j))",
        (
            T + "test_fair_scorers.py::test_greedy_keep_order_by_hand",
            T + "test_fair_scorers.py::test_fairgrape_keeps_group_shares_closer_to_dense_than_taylor_ranking",
        ),
    ),
    Fault(
        "fairgrape-signed-taylor",
        "FairGRAPE's per-group importance sums signed activation x gradient terms (no absolute value)",
        "pwprune/pruning/fair.py",
        "per_sample = hooks.taylor_samples().double().abs() * len(g)",
        "per_sample = hooks.taylor_samples().double() * len(g)",
        (T + "test_fair_scorers.py::test_group_taylor_equals_per_sample_activation_times_gradient_by_group",),
    ),
    Fault(
        "fairprune-roles-swapped",
        "FairPrune removes the channels salient for the unprivileged group instead of the privileged one",
        "pwprune/pruning/fair.py",
        "scores = beta * unpriv - s[:, priv]",
        "scores = s[:, priv] - beta * unpriv",
        (
            T + "test_fair_scorers.py::test_fairprune_scores_by_hand",
            T + "test_fair_scorers.py::test_fairprune_removes_the_channels_salient_only_for_the_privileged_group",
        ),
    ),
    Fault(
        "fairprune-privileged-is-worst",
        "FairPrune takes the group with the lowest dense accuracy as the privileged one",
        "pwprune/pruning/fair.py",
        "priv = min(range(k_groups), key=lambda k: (-accuracy[k], -mean_prob[k], k))",
        "priv = min(range(k_groups), key=lambda k: (accuracy[k], mean_prob[k], k))",
        (
            T + "test_fair_scorers.py::test_group_weights_by_hand",
            T + "test_fair_scorers.py::test_fairprune_removes_the_channels_salient_only_for_the_privileged_group",
        ),
    ),
    # ---- pruning: which channels go
    Fault(
        "magnitude-keeps-weakest",
        "magnitude keeps the weakest filters (scores inverted)",
        "pwprune/pruning/importance.py",
        "return scores.pow(1.0 / norm).float()",
        "return scores.pow(-1.0 / norm).float()",
        (T + "test_method_choices.py::test_magnitude_removes_the_smallest_norms",),
    ),
    Fault(
        "magnitude-l1-is-l2",
        "magnitude ignores its norm option and always uses L2",
        "pwprune/pruning/importance.py",
        "w = m.weight.detach().double().abs().pow(norm)",
        "w = m.weight.detach().double().abs().pow(2)",
        (T + "test_method_choices.py::test_l1_and_l2_choose_differently_where_they_should",),
    ),
    Fault(
        "taylor-random",
        "Taylor scores replaced by random numbers",
        "pwprune/pruning/scorers.py",
        "scores = acc / max(seen, 1)",
        "scores = torch.rand(layout.total)",
        (T + "test_method_choices.py::test_taylor_removes_the_lowest_scored_channels",),
    ),
    Fault(
        "taylor-abs-after-sum",
        "Taylor sums activation x gradient over samples before the absolute value",
        "pwprune/pruning/importance.py",
        "return per_sample.abs().sum(0), n",
        "return per_sample.sum(0).abs(), n",
        (T + "test_method_choices.py::test_taylor_probe_equals_activation_times_gradient",),
    ),
    Fault(
        "autobot-random-gates",
        "AutoBot's trained gates replaced by random numbers",
        "pwprune/pruning/autobot.py",
        "return torch.sigmoid(logits).detach().float().cpu()",
        "return torch.rand(layout.total)",
        (T + "test_method_choices.py::test_autobot_removes_the_channels_whose_gates_are_lowest",),
    ),
    Fault(
        "autobot-ignores-task-loss",
        "AutoBot's gates do not learn from the task loss",
        "pwprune/pruning/autobot.py",
        "loss = task + beta * flop + binarization * polar",
        "loss = task.detach() + beta * flop + binarization * polar",
        (
            T + "test_method_choices.py::test_autobot_gates_move_with_the_task_loss_only_where_it_reaches",
            T + "test_method_choices.py::test_autobot_gates_of_useless_channels_fall_below_useful_ones",
        ),
    ),
    # AutoBot as the authors' code ran it (issue 19): one fault per option
    Fault(
        "autobot-asymmetric-is-symmetric",
        "AutoBot's asymmetric FLOP term is not scaled above the target",
        "pwprune/pruning/autobot.py",
        "return (kept - keep) / (1.0 - keep)",
        "return (kept - keep)",
        (T + "test_autobot_authors.py::test_asymmetric_flop_term_is_the_authors_formula_in_flop_counts",),
    ),
    Fault(
        "autobot-flop-option-ignored",
        "AutoBot always trains with the symmetric FLOP term",
        "pwprune/pruning/autobot.py",
        "flop = flop_term(kept.to(device), keep_target, flop_loss)",
        'flop = flop_term(kept.to(device), keep_target, "symmetric")',
        (T + "test_autobot_authors.py::test_train_gates_uses_the_chosen_flop_term",),
    ),
    Fault(
        "autobot-init-ignored",
        "AutoBot's gate logits always start at 3.0",
        "pwprune/pruning/autobot.py",
        "torch.full((layout.total,), float(init)",
        "torch.full((layout.total,), 3.0",
        (T + "test_autobot_authors.py::test_init_is_the_first_gate_value",),
    ),
    Fault(
        "autobot-train-mode-ignored",
        "AutoBot's gates always train with the model in eval mode",
        "pwprune/pruning/autobot.py",
        'model.train(mode == "train")',
        "model.train(False)",
        (T + "test_autobot_authors.py::test_mode_train_moves_bn_statistics_while_gates_learn_and_they_come_back",),
    ),
    Fault(
        "autobot-bn-stats-kept-drifted",
        "train-mode gate training leaves the drifted BN statistics in the model",
        "pwprune/pruning/autobot.py",
        "b.copy_(saved)",
        "pass",
        (
            T + "test_autobot_authors.py::test_mode_train_moves_bn_statistics_while_gates_learn_and_they_come_back",
            T + "test_autobot_authors.py::test_mode_train_prunes_a_model_with_the_dense_bn_statistics",
        ),
    ),
    Fault(
        "autobot-best-is-post-step",
        "AutoBot keep 'best' keeps the gates after the best step's update",
        "pwprune/pruning/autobot.py",
        'best_logits = scored if keep == "best" else logits.detach().clone()',
        "best_logits = logits.detach().clone()",
        (T + "test_autobot_authors.py::test_keep_best_is_the_lowest_loss_after_60_percent_of_the_iterations",),
    ),
    Fault(
        "autobot-best-after-ignored",
        "AutoBot's best gates are taken from every step, not after 60 %",
        "pwprune/pruning/autobot.py",
        "it + 1 > best_after * iterations",
        "it + 1 > 0",
        (T + "test_autobot_authors.py::test_keep_best_is_the_lowest_loss_after_60_percent_of_the_iterations",),
    ),
    Fault(
        "autobot-plain-targets-ignored",
        "plain_targets 'teacher' still trains AutoBot's gates on the labels",
        "pwprune/pruning/autobot.py",
        "soft.soft_targets = True",
        "soft.soft_targets = False",
        (
            T
            + "test_autobot_authors.py::test_plain_targets_teacher_is_cross_entropy_against_the_teachers_probabilities",
            T
            + "test_autobot_authors.py::test_prune_to_target_trains_the_gates_on_the_teacher_for_plain_targets_teacher",
        ),
    ),
    Fault(
        "soft-targets-binary-labels",
        "soft targets of a single-logit model are the labels",
        "pwprune/loss.py",
        "        elif self.soft_targets:\n            target = p\n",
        "        elif self.soft_targets:\n            target = y\n",
        (T + "test_autobot_authors.py::test_plain_targets_teacher_single_logit",),
    ),
    Fault(
        "autobot-threshold-search-is-nearest",
        "the authors' threshold search runs on to the nearest reduction",
        "pwprune/pruning/autobot.py",
        "if abs(red - target) < tolerance:",
        "if False:",
        (T + "test_autobot_authors.py::test_threshold_search_stops_at_the_first_threshold_within_tolerance",),
    ),
    Fault(
        "autobot-tolerance-pw-ignored",
        "reweighting losses stop AutoBot's search at the plain tolerance",
        "pwprune/pruning/target.py",
        'tolerance = float(opts["tolerance_pw"])',
        "tolerance = tolerance",
        (T + "test_autobot_authors.py::test_tolerance_pw_is_the_tolerance_of_reweighting_losses_only",),
    ),
    Fault(
        "prune-highest-first",
        "the pruning loop removes the highest-ranked candidates",
        "pwprune/pruning/target.py",
        "return cand[torch.argsort(scores[cand], stable=True)]",
        "return cand[torch.argsort(scores[cand], stable=True, descending=True)]",
        (T + "test_method_choices.py::test_magnitude_removes_the_smallest_norms",),
    ),
    # ---- the PW loss and its teacher
    Fault(
        "pw-weights-easy-samples",
        "PW weights the samples the dense model finds easy",
        "pwprune/loss.py",
        "return m + (1 - m) * (1 - s) ** self.gamma",
        "return m + (1 - m) * s ** self.gamma",
        (T + "test_loss.py",),
    ),
    Fault(
        "pw-correction-inverted",
        "PW's soft target where the teacher is wrong, hard where right",
        "pwprune/loss.py",
        "target = torch.where(teacher_right[:, None], probs, onehot)",
        "target = torch.where(teacher_right[:, None], onehot, probs)",
        (T + "test_loss.py",),
    ),
    Fault(
        "pw-is-ce",
        "the `pw` loss kind is plain cross-entropy",
        "pwprune/loss.py",
        '"pw": (True, True)',
        '"pw": (False, False)',
        (T + "test_loss.py",),
    ),
    Fault(
        "teacher-rows-unordered",
        "teacher outputs stored in loader order, not sample-index order",
        "pwprune/loss.py",
        "out[idx] = rows",
        "out = rows",
        (T + "test_loss.py",),
    ),
    Fault(
        "teacher-on-augmented-views",
        "the cached teacher is computed on augmented training images",
        "pwprune/stages/inputs.py",
        "seed, augment=False, shuffle=False",
        "seed, augment=True, shuffle=False",
        (T + "test_pipeline_facts.py::test_teacher_file_is_the_dense_models_training_logits_in_index_order",),
    ),
    Fault(
        "frozen-teacher-follows-student",
        "the on-the-fly teacher is the model being pruned, not a frozen copy",
        "pwprune/loss.py",
        "self.model = copy.deepcopy(model).eval().requires_grad_(False)",
        "self.model = model",
        (T + "test_loss.py",),
    ),
    Fault(
        "fit-teacher-ignored",
        "training computes the PW loss against the student's own logits, not the teacher's",
        "pwprune/train.py",
        "teacher_logits = teacher(x, idx) if teacher is not None else None",
        "teacher_logits = logits.detach() if teacher is not None else None",
        (T + "test_train.py",),
    ),
    Fault(
        "fit-does-not-learn",
        "training backpropagates nothing: the weights never move",
        "pwprune/train.py",
        "loss = per_sample.mean()",
        "loss = per_sample.detach().mean().requires_grad_()",
        (T + "test_train.py",),
    ),
    # ---- pipeline: what each job trains with
    Fault(
        "finetune-always-ce",
        "every fine-tuning job trains with cross-entropy, whatever its loss",
        "pwprune/stages/finetune.py",
        'make_loss(finetune["loss"], finetune.get("pw"))',
        'make_loss("ce", finetune.get("pw"))',
        (T + "test_pipeline_facts.py::test_pw_and_ce_finetuning_of_one_pruned_model_end_in_different_weights",),
    ),
    Fault(
        "finetune-saves-pruned-weights",
        "fine-tuning saves the pruned weights unchanged",
        "pwprune/stages/finetune.py",
        'out["model"],\n        model,\n        info["arch"],',
        'out["model"],\n        load_checkpoint(pruned_path)[0],\n        info["arch"],',
        (T + "test_pipeline_facts.py::test_finetuning_changes_the_weights_not_the_architecture",),
    ),
    Fault(
        "provenance-top-level-imports-only",
        "a rule's code hash misses the modules its stages import inside functions",
        "pwprune/provenance.py",
        "names: list[str] = []\n    for node in ast.walk(tree):",
        "names: list[str] = []\n    for node in tree.body:",
        (T + "test_provenance.py::test_closure_follows_function_level_relative_and_dynamic_imports",),
    ),
    Fault(
        "evaluate-ignores-divergence",
        "a diverged fine-tuning's metrics are reported as a real trial",
        "pwprune/metrics.py",
        'if outputs["diverged"]:',
        "if False:",
        (
            T + "test_metrics.py::test_a_diverged_checkpoints_rows_are_degenerate",
            T + "test_reliability.py::test_divergence_recorded_as_degenerate_when_asked",
        ),
    ),
    Fault(
        "outputs-labels-are-groups",
        "a checkpoint's outputs file stores the group ids as its labels",
        "pwprune/outputs.py",
        'arrays[f"{s}.y"] = np.asarray(v["y"], dtype=np.int64)',
        'arrays[f"{s}.y"] = np.asarray(v["g"], dtype=np.int64)',
        (T + "test_bootstrap.py::test_outputs_round_trip_without_pickles",),
    ),
    Fault(
        "latency-of-another-checkpoint",
        "the table takes each checkpoint's latency from the first checkpoint measured",
        "pwprune/stages/aggregate.py",
        '"latency_ms": latency[folder]}',
        '"latency_ms": next(iter(latency.values()))}',
        (T + "test_metrics.py::test_the_table_rows_of_a_checkpoint_are_its_outputs_rows_and_latency",),
    ),
    Fault(
        "pw-settings-ignore-method",
        "per-method min_weight/gamma are ignored",
        "pwprune/config.py",
        'override = pw.get("methods", {}).get(method, {})',
        "override = {}",
        (
            T + "test_config.py::test_pw_settings_override_per_method",
            T + "test_pipeline_facts.py::test_each_job_logs_the_loss_settings_it_used",
        ),
    ),
    # ---- metrics
    Fault(
        "auroc-inverted",
        "AUROC reports 1 - AUROC (the negatives' ranks)",
        "pwprune/metrics.py",
        "return float((ranks[positive].sum() - n_pos",
        "return 1 - float((ranks[positive].sum() - n_pos",
        (T + "test_metrics.py",),
    ),
    Fault(
        "auroc-ties-win",
        "AUROC ranks tied scores at the top of their tie instead of the middle",
        "pwprune/metrics.py",
        "ranks[order] = ((end - counts + 1 + end) / 2)[inverse]",
        "ranks[order] = end[inverse]",
        (T + "test_metrics.py",),
    ),
    Fault(
        "group-rows-shifted",
        "per-group metrics computed on the next group's samples",
        "pwprune/metrics.py",
        "masks = [(str(name), g == i) for i, name in enumerate(group_names)]",
        "masks = [(str(name), g == (i + 1) % len(group_names)) for i, name in enumerate(group_names)]",
        (T + "test_metrics.py",),
    ),
    Fault(
        "worst-drop-is-best",
        "the worst group's drop is the smallest drop",
        "pwprune/summary.py",
        '"worst_drop": float(d.max())',
        '"worst_drop": float(d.min())',
        (T + "test_metrics.py", T + "test_plots.py::test_trial_fairness_against_same_seed_dense"),
    ),
    # ---- fairness comparison, summary and figures
    Fault(
        "dense-seed-averaged",
        "each seed compared with the seed-averaged dense model, not its own",
        "pwprune/summary.py",
        "for table, k in ((per_seed, (exp, split, seed)), (pooled, (exp, split))):",
        "for table, k in ((pooled, (exp, split)),):",
        (T + "test_plots.py::test_each_trial_is_compared_with_its_own_seeds_dense_model",),
    ),
    Fault(
        "dense-no-fallback",
        "a seed without a dense model gets no drops instead of the seed average",
        "pwprune/summary.py",
        "for table, k in ((per_seed, (exp, split, seed)), (pooled, (exp, split))):",
        "for table, k in ((per_seed, (exp, split, seed)),):",
        (T + "test_plots.py::test_a_seed_without_dense_rows_falls_back_to_the_seed_averaged_dense_model",),
    ),
    Fault(
        "gap-diff-reversed",
        "the paired difference is CE - PW instead of PW - CE",
        "pwprune/summary.py",
        "d = (pw.loc[common] - ce.loc[common])",
        "d = (ce.loc[common] - pw.loc[common])",
        (T + "test_plots.py::test_summary_numbers_by_hand",),
    ),
    # ---- power of the paired tests: the minimal detectable difference (issue 29, item 4)
    Fault(
        "mde-from-sd-not-standard-error",
        "the minimal detectable difference is the noncentrality times the sd of the paired "
        "differences, not times their standard error sd/sqrt(n)",
        "pwprune/power.py",
        "return lam * sd / math.sqrt(n)",
        "return lam * sd",
        (
            T + "test_power.py::test_the_mde_is_detected_80_percent_of_the_time_in_a_simulation",
            T + "test_power.py::test_textbook_figures_and_the_large_sample_limit",
        ),
    ),
    Fault(
        "mde-one-sided",
        "the minimal detectable difference is that of a one-sided test at alpha, not a two-sided one",
        "pwprune/power.py",
        "crit = stats.t.ppf(1 - alpha / 2, df)",
        "crit = stats.t.ppf(1 - alpha, df)",
        (
            T + "test_power.py::test_the_mde_is_detected_80_percent_of_the_time_in_a_simulation",
            T + "test_power.py::test_textbook_figures_and_the_large_sample_limit",
        ),
    ),
    Fault(
        "ablation-placeholder-only",
        "the ablation figure drops every row and draws its placeholder",
        "pwprune/plots.py",
        'present = [l for l in ABLATION_ONLY_LABELS if (d["loss"] == l).any()]',
        "present = []",
        (T + "test_plots.py::test_ablation_with_rows_draws_panels",),
    ),
    Fault(
        "comparison-overall-for-worst",
        "the comparison figure plots the overall accuracy drop where the worst group's drop belongs",
        "pwprune/plots.py",
        '("worst_drop", "(a) worst-group accuracy drop',
        '("acc_drop", "(a) worst-group accuracy drop',
        (T + "test_plots.py::test_comparison_draws_every_method_and_loss_by_hand",),
    ),
    Fault(
        "series-ignore-loss",
        "every curve of a figure is the mean over all losses together",
        "pwprune/plots.py",
        't = trials[trials["loss"] == loss]',
        "t = trials",
        (
            T + "test_plots.py::test_group_performance_draws_each_groups_mean_over_seeds",
            T + "test_plots.py::test_fairness_gap_draws_drops_against_each_seeds_dense_model",
        ),
    ),
    # ---- data: labels, groups, splits
    Fault(
        "fitzpatrick-labels-rotated",
        "Fitzpatrick17k's label-to-class mapping rotated",
        "pwprune/data/fitzpatrick17k.py",
        'y = df["three_partition_label"].map(CLASSES.index)',
        'y = df["three_partition_label"].map(lambda s: (CLASSES.index(s) + 1) % 3)',
        (T + "test_data.py::test_fitzpatrick_every_sample_has_its_csv_rows_label_and_group",),
    ),
    Fault(
        "fitzpatrick-groups-shifted",
        "Fitzpatrick17k's skin types paired 2-3, 4-5 instead of 1-2, 3-4",
        "pwprune/data/fitzpatrick17k.py",
        'g = ((df["fitzpatrick_scale"].to_numpy(np.int64) - 1) // 2)',
        'g = np.minimum(df["fitzpatrick_scale"].to_numpy(np.int64) // 2, 2)',
        (T + "test_data.py::test_fitzpatrick_every_sample_has_its_csv_rows_label_and_group",),
    ),
    Fault(
        "splits-overlap",
        "stratified splits overlap: evaluation samples leak into training",
        "pwprune/data/common.py",
        "            start += k",
        "            start += 0",
        (T + "test_data.py",),
    ),
    # ---- the default experiment's data and the jobs' fast paths
    Fault(
        "copies-repeat-one-rendering",
        "every training copy of a scan is the same rendering",
        "pwprune/data/digits.py",
        "v = np.concatenate([distort(v, cfg, rng) for _ in range(copies)])",
        "v = np.concatenate([distort(v, cfg, rng)] * copies)",
        (T + "test_default_data.py::test_copies_are_distinct_renderings_that_keep_label_and_group",),
    ),
    Fault(
        "occlusion-never",
        "the occluding square is never drawn",
        "pwprune/data/digits.py",
        'hit = np.flatnonzero(rng.random(n) < cfg["occlusion_rate"])',
        "hit = np.flatnonzero(rng.random(n) < 0)",
        (T + "test_default_data.py::test_distort_identity_and_occlusion",),
    ),
    Fault(
        "batch-unnormalised",
        "whole-batch loading skips the train mean/std normalisation",
        "pwprune/data/dataset.py",
        "x = (torch.from_numpy(self.x[idx.numpy()]).float().div_(255.0) - self.mean) / self.std",
        "x = torch.from_numpy(self.x[idx.numpy()]).float().div_(255.0)",
        (T + "test_default_data.py::test_batched_loader_gives_the_per_sample_batches",),
    ),
    Fault(
        "job-csv-nan-as-text",
        "jobs write a missing AUROC as 'nan' where pandas wrote an empty cell",
        "pwprune/stages/jobs.py",
        "if v is None or (isinstance(v, float) and math.isnan(v)):",
        "if v is None:",
        (T + "test_default_data.py::test_job_csv_writer_matches_pandas",),
    ),
    Fault(
        "dynamo-stand-in-drops-functions",
        "the deferred-dynamo stand-in turns the functions torch marks do-not-compile into no-ops",
        "pwprune/train.py",
        "            return fn if fn is not None else (lambda f: f)",
        "            return (lambda *a, **k: None) if fn is not None else (lambda f: f)",
        (T + "test_default_data.py::test_deferred_dynamo_trains_identically_without_importing_it",),
    ),
    Fault(
        "diagnostic-never-warns",
        "the teacher diagnostic never warns that PW will act like CE",
        "pwprune/diagnostics.py",
        "if not (ratio < WEIGHT_RATIO_LIMIT and softness < SOFTNESS_LIMIT):",
        "if True:",
        (T + "test_diagnostics.py::test_warning_fires_on_a_memorising_teacher_with_one_slightly_soft_cell",),
    ),
    Fault(
        "diagnostic-weights-of-wrong-samples",
        "the diagnostic's weights use the probability of the predicted, not the true, label",
        "pwprune/diagnostics.py",
        "s = probs.gather(1, y[:, None]).squeeze(1)",
        "s = probs.max(1).values",
        (T + "test_diagnostics.py::test_multiclass_numbers_by_hand",),
    ),
    # ---- checkpoints
    Fault(
        "checkpoint-drops-weights",
        "loading a checkpoint keeps freshly initialised weights",
        "pwprune/checkpoint.py",
        'model.load_state_dict(ckpt["state_dict"], strict=True)',
        "pass",
        (T + "test_checkpoint.py",),
    ),
    # ---- Taylor's trajectory (schedule "authors") and the paper's training options (issue 12)
    Fault(
        "trajectory-resume-skips-check",
        "a continued Taylor trajectory skips the pruning step due at the saved batch",
        "pwprune/pruning/trajectory.py",
        'check_point(batch, float("nan"))',
        "pass",
        (T + "test_taylor_trajectory.py::test_prune_to_target_continues_through_a_checkpointed_chain",),
    ),
    Fault(
        "trajectory-prunes-highest",
        "the trajectory removes the highest-scored channels",
        "pwprune/pruning/trajectory.py",
        "for j in torch.argsort(scores, stable=True).tolist():",
        "for j in torch.argsort(-scores, stable=True).tolist():",
        (T + "test_taylor_trajectory.py::test_a_step_removes_the_lowest_scored_channels_after_B_sgd_batches",),
    ),
    Fault(
        "trajectory-stream-unseeded",
        "the trajectory's random draws are not seeded per batch number",
        "pwprune/pruning/trajectory.py",
        "torch.manual_seed(_mix(seed, 2, b))",
        "pass",
        (T + "test_taylor_trajectory.py::test_batch_stream_depends_only_on_seed_and_batch_number",),
    ),
    Fault(
        "trajectory-never-trains",
        "the trajectory takes no SGD step between pruning steps",
        "pwprune/pruning/trajectory.py",
        "            opt.step()\n            count += 1",
        "            count += 1",
        (T + "test_taylor_trajectory.py::test_continuing_from_a_smaller_target_equals_one_uninterrupted_trajectory",),
    ),
    Fault(
        "dag-no-taylor-chain",
        "the DAG prunes every Taylor target from the dense model, no chain",
        "workflow/rules/common.smk",
        'inputs["trajectory"] = pruned_file({**wc, "target": previous}, "model.pt")',
        "pass",
        (T + "test_taylor_trajectory.py::test_the_dag_chains_taylor_targets_and_the_chained_job_continues",),
    ),
    # ---- Taylor and the data as the authors' code ran them (issue 19, items 1, 4, 8, 9)
    Fault(
        "taylor-site-conv-ignored",
        "Taylor's site conv still measures at the BN output",
        "pwprune/pruning/importance.py",
        "        return conv_sites(layout, model)",
        "        return layout.sites",
        (
            T + "test_taylor_options.py::test_probe_at_the_configured_site_equals_activation_times_gradient",
            T + "test_taylor_options.py::test_authors_step_removes_the_lowest_unnormalised_scores_at_the_site",
        ),
    ),
    Fault(
        "taylor-normalise-ignored",
        "the geometric schedule normalises its scores with normalise: false",
        "pwprune/pruning/scorers.py",
        "if normalise is None or normalise:",
        "if True:",
        (T + "test_taylor_options.py::test_geometric_unnormalised_score_is_the_hand_computed_one",),
    ),
    Fault(
        "taylor-restore-never",
        "restore_weights never gives the pruned model the dense weights",
        "pwprune/pruning/target.py",
        'return mode == "always" or (mode == "authors" and pw)',
        "return False",
        (T + "test_taylor_options.py::test_restore_gives_exactly_the_dense_weights_of_the_kept_channels",),
    ),
    Fault(
        "taylor-restore-authors-both-arms",
        "restore_weights authors restores the CE arm too",
        "pwprune/pruning/target.py",
        '(mode == "authors" and pw)',
        '(mode == "authors")',
        (T + "test_taylor_options.py::test_authors_restore_the_pw_arm_only",),
    ),
    Fault(
        "trajectory-restore-ignored",
        "the authors' schedule keeps the trajectory's weights despite restore_weights",
        "pwprune/pruning/target.py",
        'materialize(model if dense is None else dense, snap["plan"], ex)',
        'materialize(model, snap["plan"], ex)',
        (T + "test_taylor_options.py::test_restore_gives_exactly_the_dense_weights_of_the_kept_channels",),
    ),
    Fault(
        "dag-restore-authors-both-arms",
        "the prune rule resolves restore_weights authors to always in the CE arm too",
        "workflow/rules/common.smk",
        'options["restore_weights"] = "always" if ploss.startswith("pw") else "never"',
        'options["restore_weights"] = "always"',
        (T + "test_workflow.py::test_config_change_reruns_exactly_what_depends_on_it[taylor_restore_authors]",),
    ),
    Fault(
        "fitzpatrick-authors-holds-out-light",
        "the authors' Fitzpatrick17k split leaves a 1-2 image out of train",
        "pwprune/data/fitzpatrick17k.py",
        'return {"train": np.flatnonzero(g == 0), ',
        'return {"train": np.flatnonzero(g == 0)[1:], ',
        (T + "test_authors_data.py::test_fitzpatrick_authors_split",),
    ),
    Fault(
        "fitzpatrick-authors-val-tenth",
        "the authors' Fitzpatrick17k split puts a tenth, not n // 4, in val",
        "pwprune/data/fitzpatrick17k.py",
        "        val.append(idx[:len(idx) // 4])\n        test.append(idx[len(idx) // 4:])",
        "        val.append(idx[:len(idx) // 10])\n        test.append(idx[len(idx) // 10:])",
        (T + "test_authors_data.py::test_fitzpatrick_authors_split",),
    ),
    Fault(
        "cifar-authors-without-replacement",
        "imbalanced_authors draws without replacement",
        "pwprune/data/cifar10.py",
        "draws.append(rng.choice(idx, int((1 - keep_fraction) * len(idx))))",
        "draws.append(rng.choice(idx, int((1 - keep_fraction) * len(idx)), replace=False))",
        (T + "test_authors_data.py::test_cifar10_imbalanced_authors_is_their_code_as_written",),
    ),
    Fault(
        "cifar-authors-concatenates",
        "imbalanced_authors drops the drawn cats and dogs (the intent), not the sums",
        "pwprune/data/cifar10.py",
        "discarded = sum(draws) if draws else np.zeros(0, np.int64)",
        "discarded = np.concatenate(draws) if draws else np.zeros(0, np.int64)",
        (T + "test_authors_data.py::test_cifar10_imbalanced_authors_is_their_code_as_written",),
    ),
    Fault(
        "celeba-rebalance-swapped",
        "CelebA's rebalance alpha and beta swapped (alpha scales the label)",
        "pwprune/data/celeba.py",
        "factor = {c: (alpha if c[1] != lo[1] else 1.0) * (beta if c[0] != lo[0] else 1.0) for c in cells}",
        "factor = {c: (alpha if c[0] != lo[0] else 1.0) * (beta if c[1] != lo[1] else 1.0) for c in cells}",
        (T + "test_data.py::test_celeba_rebalance",),
    ),
    Fault(
        "backbone-lr-is-head-lr",
        "the backbone trains at the head's lr whatever backbone_lr_scale says",
        "pwprune/train.py",
        'opt.param_groups[1]["lr"] = backbone_lr',
        'opt.param_groups[1]["lr"] = current_lr',
        (T + "test_paper_training.py::test_backbone_lr_follows_lightning_backbone_finetuning",),
    ),
    Fault(
        "imagenet-weights-not-loaded",
        "pretrained: imagenet reads the weights file but keeps the random init",
        "pwprune/models.py",
        "    model.load_state_dict(state, strict=True)",
        "    state = state",
        (T + "test_paper_training.py::test_imagenet_weights_are_loaded_with_a_new_head",),
    ),
    Fault(
        "imagenet-hash-unchecked",
        "a weights file whose sha256 does not match its name is trained from",
        "pwprune/models.py",
        "    _sha256_prefix_ok(path, url)",
        "    pass",
        (T + "test_paper_training.py::test_wrong_content_under_the_real_name_is_refused",),
    ),
    Fault(
        "multistep-early",
        "MultiStepLR decays one epoch before each milestone",
        "pwprune/train.py",
        "milestones=list(milestones), gamma=lr_decay",
        "milestones=[m - 1 for m in milestones], gamma=lr_decay",
        (T + "test_paper_training.py::test_multistep_drops_by_lr_decay_exactly_at_the_milestones",),
    ),
    Fault(
        "imagenet-inputs-unnormalised",
        "a pretrained model's inputs keep the data's mean/std, not ImageNet's",
        "pwprune/stages/inputs.py",
        '    return {**prepared.meta, "mean": norm[0], "std": norm[1]}',
        "    return prepared.meta",
        (T + "test_paper_training.py::test_loaders_use_the_arch_normalisation_when_it_has_one",),
    ),
    # ---- what is pruned and counted, option-A ResNets, per-class AUROC (issue 19, items 5-7)
    Fault(
        "conv-count-is-every-layer",
        "layers: conv counts every layer's MACs, not the convolutions'",
        "pwprune/pruning/graph.py",
        "return int(sum(conv_macs(model, example_inputs).values()))",
        "return macs_params_on_device(model, example_inputs)[0]",
        (T + "test_prunable_layers.py::test_conv_count_is_the_full_convolutions_by_hand",),
    ),
    Fault(
        "conv-count-has-depthwise",
        "the conv count also counts depthwise (grouped) convolutions",
        "pwprune/pruning/graph.py",
        "return isinstance(m, nn.modules.conv._ConvNd) and m.groups == 1",
        "return isinstance(m, nn.modules.conv._ConvNd)",
        (T + "test_prunable_layers.py::test_conv_count_is_the_full_convolutions_by_hand",),
    ),
    Fault(
        "conv-scope-prunes-linears",
        "layers: conv still prunes the units of hidden Linear layers",
        "pwprune/pruning/graph.py",
        "ignored += [m for m in model.modules() if isinstance(m, nn.Linear) and m not in ignored]",
        "ignored += []",
        (T + "test_prunable_layers.py::test_conv_scope_prunes_to_target_in_the_conv_count_and_keeps_linear_units",),
    ),
    Fault(
        "prune-stage-ignores-layers",
        "the prune job prunes every layer whatever prune.layers says",
        "pwprune/stages/prune.py",
        'layers=prune.get("layers", "all"),',
        'layers="all",',
        (T + "test_scope_stages.py::test_prune_json_records_the_conv_count_beside_every_layers_macs",),
    ),
    Fault(
        "finetune-count-forgotten",
        "fine-tuned rows claim every layer's count whatever the pruning counted",
        "pwprune/stages/finetune.py",
        '"counted_layers": pruned_meta.get("counted_layers", "all")',
        '"counted_layers": "all"',
        (T + "test_scope_stages.py::test_metrics_rows_name_the_count_and_keep_every_layers_macs",),
    ),
    Fault(
        "trajectory-ignores-layers",
        "Taylor's authors trajectory prunes and counts every layer",
        "pwprune/pruning/trajectory.py",
        'layout = Layout(model, DG, ex, layers=opts.get("layers", "all"))',
        "layout = Layout(model, DG, ex)",
        (T + "test_prunable_layers.py::test_resnet20_a_taylor_prunes_to_target_and_reloads",),
    ),
    Fault(
        "resnet-a-stream-prunable",
        "the option-A ResNet's residual stream is not held fixed",
        "pwprune/models.py",
        'own = model.fixed_layers() if callable(getattr(model, "fixed_layers", None)) else []',
        "own = []",
        (T + "test_prunable_layers.py::test_option_a_only_inner_channels_are_prunable",),
    ),
    Fault(
        "resnet-a-pad-one-side",
        "the option-A shortcut pads all new channels after the identity",
        "pwprune/models.py",
        "self.stride, self.front = int(stride), (c_out - c_in) // 2",
        "self.stride, self.front = int(stride), 0",
        (T + "test_prunable_layers.py::test_option_a_shortcut_is_a_subsampled_zero_padded_identity",),
    ),
    Fault(
        "class-auroc-within-group",
        "groups = classes: each group's AUROC computed inside the group (NaN)",
        "pwprune/metrics.py",
        "per_class = groups_are_classes and i < len(group_names)",
        "per_class = False",
        (T + "test_metrics.py::test_groups_are_classes_auroc_is_sklearns_per_class_one_vs_rest",),
    ),
    Fault(
        "groups-are-classes-unset",
        "prepared CIFAR-10 data does not say its groups are its classes",
        "pwprune/data/__init__.py",
        'built["group_names"] == built["class_names"] and all(np.array_equal(y, g) for _, y, g in splits.values())',
        "False",
        (T + "test_scope_stages.py::test_groups_are_classes_rows_have_each_class_one_vs_rest_auroc",),
    ),
    Fault(
        "evaluate-ignores-groups-are-classes",
        "the evaluation ignores the data's groups_are_classes",
        "pwprune/outputs.py",
        '"groups_are_classes": bool(prepared.meta.get("groups_are_classes", False)),',
        '"groups_are_classes": False,',
        (T + "test_scope_stages.py::test_groups_are_classes_rows_have_each_class_one_vs_rest_auroc",),
    ),
    # ---- variants (issue 19's comparison)
    Fault(
        "variant-diff-reversed",
        "a variant's paired difference is base - variant instead of variant - base",
        "pwprune/summary.py",
        "diff, half, p, n, note = _paired_test(b[col], v[col])",
        "diff, half, p, n, note = _paired_test(v[col], b[col])",
        (T + "test_variants.py::test_compare_variants_pairs_by_seed_by_hand",),
    ),
    Fault(
        "variant-own-dense-models",
        "a variant trains its own dense models instead of pruning its base's",
        "workflow/rules/common.smk",
        'return f"{DENSE}/{name}".format(**{**r, "exp": base_exp(r["exp"])})',
        'return f"{DENSE}/{name}".format(**r)',
        (T + "test_variants.py::test_variant_run_uses_the_base_dense_models_and_compares",),
    ),
    # ---- reproducible numbers (issue 20)
    Fault(
        "threads-follow-cores",
        "a job computes with the cores Snakemake allots, not the configured thread count",
        "pwprune/stages/inputs.py",
        'threads = numerics.get("threads")',
        "threads = None",
        (
            T + "test_reproducibility.py::test_weights_do_not_depend_on_cores",
            T + "test_reproducibility.py::test_setup_computes_with_the_configured_threads_whatever_is_allotted",
        ),
    ),
    Fault(
        "threads-not-configuration",
        "the thread count a job computes with ignores params.yaml (every job: 1), so changing it reruns nothing",
        "workflow/rules/common.smk",
        "return pc.numerics(EXPS[wildcards.exp], stage, device())",
        "return pc.numerics({}, stage, device())",
        (
            T + "test_reproducibility.py::test_weights_do_not_depend_on_cores",
            T + "test_workflow.py::test_each_edit_reruns_exactly_its_rules",
        ),
    ),
    Fault(
        "deterministic-mode-off",
        "deterministic mode never switches torch's deterministic algorithms on",
        "pwprune/stages/inputs.py",
        "torch.use_deterministic_algorithms(on)",
        "torch.use_deterministic_algorithms(False)",
        (
            T + "test_reproducibility.py::test_setup_applies_deterministic_mode_and_the_environment_records_it",
            T + "test_reproducibility.py::test_an_op_without_deterministic_kernel_stops_the_job_naming_op_and_option",
        ),
    ),
    Fault(
        "augmentation-global-rng",
        "augmentation's crop draws from torch's global RNG, not its own seeded generator",
        "pwprune/data/dataset.py",
        "offsets = torch.randint(0, 2 * p + 1, (len(idx), 2), generator=self.augment_generator)",
        "offsets = torch.randint(0, 2 * p + 1, (len(idx), 2))",
        (T + "test_reproducibility.py::test_augmentation_draws_from_its_own_seeded_generator",),
    ),
    Fault(
        "environment-not-in-rows",
        "the metrics rows do not name the environment of their checkpoint",
        "pwprune/outputs.py",
        'environment=environment_id(meta.get("environment")),',
        'environment="unrecorded",',
        (T + "test_scope_stages.py::test_every_row_names_the_numeric_environment_of_its_checkpoint",),
    ),
    Fault(
        "environment-threads-configured",
        "the recorded thread count is a constant 1, not the one the job computed with",
        "pwprune/environment.py",
        '"threads": int(torch.get_num_threads()),',
        '"threads": 1,',
        (
            T + "test_environment.py::test_numeric_environment_reads_live_cpu_state",
            T + "test_reproducibility.py::test_weights_do_not_depend_on_cores",
        ),
    ),
    Fault(
        "mixing-across-machines-silent",
        "the summary does not warn when one comparison's rows come from different machines",
        "pwprune/summary.py",
        "        if len(machines) < 2:\n            continue",
        "        if True:\n            continue",
        (
            T + "test_environment.py::test_dense_and_finetuned_on_different_cpu_models_warns_naming_both",
            T + "test_environment.py::test_seeds_split_across_gpu_types_warns",
        ),
    ),
    Fault(
        "config-not-canonical",
        "the validated configuration keeps the file's key order, so reordering params.yaml reruns every job",
        "pwprune/config.py",
        "    canonicalize(config, schema)\n    return config",
        "    return config",
        (
            T + "test_config.py::test_validated_config_is_canonical",
            T + "test_workflow.py::test_same_config_in_another_key_order_reruns_nothing",
        ),
    ),
    Fault(
        "round-to-ignored",
        "round_to is accepted but ignored: pruned groups keep counts that are not multiples of it",
        "pwprune/pruning/target.py",
        "if not round_to or round_to == 1:",
        "if True:",
        (
            T + "test_round_to.py::test_uneven_groups_keep_multiples_or_stay_whole",
            T + "test_round_to.py::test_resnet18_convs_are_multiples_within_tolerance",
        ),
    ),
    Fault(
        "prepared-x-not-mapped",
        "a prepared split's images are read whole into every job's memory instead of memory-mapped",
        "pwprune/data/__init__.py",
        'x = np.load(path, mmap_mode="r", allow_pickle=False)',
        "x = np.load(path, mmap_mode=None, allow_pickle=False)",
        (T + "test_prepared_mmap.py::test_layout_and_x_is_a_read_only_memmap_of_the_prepared_values",),
    ),
    # ---- device-side batches, resume, mixed precision (issue 13)
    Fault(
        "batches-unnormalised",
        "the batched path skips the train mean/std normalisation",
        "pwprune/data/dataset.py",
        "return x.float().div_(255.0).sub_(self.mean).div_(self.std)",
        "return x.float().div_(255.0)",
        (T + "test_batches.py::test_without_augmentation_batches_equal_the_per_sample_dataset_bit_for_bit",),
    ),
    Fault(
        "batches-never-flip",
        "the batched augmentation crops but never flips",
        "pwprune/data/dataset.py",
        "flips = torch.rand(len(idx), generator=self.augment_generator) < 0.5",
        "flips = torch.rand(len(idx), generator=self.augment_generator) < 0.0",
        (T + "test_batches.py::test_augmentation_draws_crops_and_flips_as_the_per_sample_path_does",),
    ),
    Fault(
        "batches-flip-reads-forwards",
        "a flipped image is cropped but not mirrored",
        "pwprune/data/dataset.py",
        "        if flip:\n            out[i] = out[i].flip(-1)\n",
        "",
        (T + "test_batches.py::test_crop_and_flip_is_the_per_sample_augmentation_for_every_draw",),
    ),
    Fault(
        "batches-restart-the-pass",
        "a restored batch state starts its pass from the first batch again",
        "pwprune/data/dataset.py",
        "self._continue = self._position > 0",
        "self._continue = False",
        (
            T + "test_batches.py::test_a_restored_state_continues_with_the_very_batches_the_pass_would_have_had",
            T + "test_resume.py::test_a_killed_fit_resumes_to_the_uninterrupted_weights_bit_for_bit",
        ),
    ),
    Fault(
        "resume-forgets-rng",
        "a resumed fit does not restore the global RNG (dropout draws differ from the uninterrupted run)",
        "pwprune/train.py",
        '        _set_rng_state(saved["rng"], device)\n',
        "",
        (T + "test_resume.py::test_a_killed_fit_resumes_to_the_uninterrupted_weights_bit_for_bit",),
    ),
    Fault(
        "resume-ignores-fingerprint",
        "a resume state saved for other settings is continued from",
        "pwprune/train.py",
        'if state.get("fingerprint") != self.fingerprint:',
        "if False:",
        (T + "test_resume.py::test_a_state_saved_for_other_settings_is_set_aside",),
    ),
    Fault(
        "resume-never-saved-by-jobs",
        "the training stages never pass their resume state to fit: a killed job starts at epoch 1",
        "pwprune/stages/inputs.py",
        "        resume=resume,\n        validate=validation(",
        "        resume=None,\n        validate=validation(",
        (T + "test_resume.py::test_a_sigkilled_training_job_resumes_where_it_was_and_ends_with_the_same_weights",),
    ),
    Fault(
        "precision-ignored",
        "precision bf16 trains in fp32",
        "pwprune/train.py",
        "amp_dtype = autocast_dtype(precision, device)",
        "amp_dtype = autocast_dtype(precision, device) and None",
        (T + "test_resume.py::test_bf16_on_cpu_trains_with_the_pw_loss_in_fp32_close_to_fp32",),
    ),
    Fault(
        "pw-loss-in-bf16",
        "under bf16 the PW loss is computed from bf16 logits",
        "pwprune/train.py",
        "            logits = logits.float()\n",
        "",
        (T + "test_resume.py::test_bf16_on_cpu_trains_with_the_pw_loss_in_fp32_close_to_fp32",),
    ),
    Fault(
        "stage-trains-in-fp32",
        "the training stages hand fit fp32 whatever the experiment's precision",
        "pwprune/stages/inputs.py",
        'precision=numerics.get("precision", "fp32"),',
        'precision="fp32",',
        (T + "test_resume.py::test_bf16_runs_end_to_end_on_cpu_with_the_pw_loss_close_to_fp32",),
    ),
    Fault(
        "precision-not-recorded",
        "a fine-tuned checkpoint's environment says fp32 whatever precision it trained in",
        "pwprune/stages/finetune.py",
        '"environment": numeric_environment(device, numerics.get("precision", "fp32")),',
        '"environment": numeric_environment(device),',
        (T + "test_resume.py::test_bf16_runs_end_to_end_on_cpu_with_the_pw_loss_close_to_fp32",),
    ),
    # ---- the field's fairness metrics (issue 14, item 4)
    Fault(
        "max-disparity-sign",
        "max disparity adds the overall drop to the worst group's instead of subtracting it",
        "pwprune/summary.py",
        '"max_disparity": float(d.max() - overall),',
        '"max_disparity": float(d.max() + overall),',
        (
            T + "test_metrics.py::test_fairness_by_hand",
            T + "test_plots.py::test_trial_max_disparity_and_the_field_metrics_over_seeds_by_hand",
        ),
    ),
    Fault(
        "fpr-from-positives",
        "a group's false-positive rate is computed on its positives",
        "pwprune/metrics.py",
        "fpr = float(np.mean(pred[neg] == 1)) if neg.any() else math.nan",
        "fpr = float(np.mean(pred[pos] == 1)) if neg.any() else math.nan",
        (
            T + "test_metrics.py::test_true_and_false_positive_rates_by_hand",
            T + "test_metrics.py::test_equalised_odds_difference_is_fairleans",
        ),
    ),
    Fault(
        "eod-ignores-fpr",
        "the equalised-odds difference looks only at the true-positive rates",
        "pwprune/summary.py",
        'for rate in ("tpr", "fpr"):',
        'for rate in ("tpr",):',
        (T + "test_metrics.py::test_equalised_odds_difference_is_fairleans",),
    ),
    # ---- the fairness methods ranked by worst-group drop (issue 14, item 5)
    Fault(
        "ranking-descending",
        "the ranking puts the largest worst-group drop first",
        "pwprune/summary.py",
        """                r["worst_drop"],
                _method_key(r["method"]),""",
        """                -r["worst_drop"],
                _method_key(r["method"]),""",
        (
            T + "test_ranking.py::test_ranking_order_worst_drops_and_accuracy_drops_by_hand",
            T + "test_ranking.py::test_ranking_section_lists_the_pairs_in_rank_order_and_counts_the_tests",
        ),
    ),
    Fault(
        "ranking-worst-reference",
        "the paired reference is the worst plain CE pair instead of the best",
        "pwprune/summary.py",
        'ref = min(plain_ce, key=lambda r: (r["worst_drop"], _method_key(r["method"])), default=None)',
        'ref = max(plain_ce, key=lambda r: (r["worst_drop"], _method_key(r["method"])), default=None)',
        (T + "test_ranking.py::test_paired_comparisons_against_ce_and_the_best_plain_ce_by_hand",),
    ),
    # ---- any torchvision classifier by name (issue 17, item 2)
    Fault(
        "tv-head-not-resized",
        "a torchvision model keeps its 1000-class ImageNet head whatever the label count",
        "pwprune/models.py",
        "model = tvm.get_model(name, weights=None, num_classes=n_out,",
        "model = tvm.get_model(name, weights=None, num_classes=1000,",
        (T + "test_model_families.py::test_head_follows_the_labels_and_input_conv_the_channels",),
    ),
    Fault(
        "tv-input-conv-not-adapted",
        "a torchvision model's input conv keeps 3 channels for grey-scale or multi-band data",
        "pwprune/models.py",
        "    if in_channels != 3:\n        first = _first_conv_name(model)",
        "    if False:\n        first = _first_conv_name(model)",
        (T + "test_model_families.py::test_head_follows_the_labels_and_input_conv_the_channels",),
    ),
    Fault(
        "tv-refused-family-offered",
        "the families the pruning graph cannot handle are offered like any other",
        "pwprune/names.py",
        "MODEL_NAMES = OWN_MODELS + tuple(n for n in TORCHVISION_CLASSIFIERS if n not in REFUSED_MODELS)",
        "MODEL_NAMES = OWN_MODELS + TORCHVISION_CLASSIFIERS",
        (T + "test_model_families.py::test_refused_family_is_refused_at_config_validation_with_the_reason",),
    ),
    Fault(
        "tv-refusal-without-reason",
        "config validation refuses a family without saying why (only the list of valid names)",
        "pwprune/config.py",
        'if path[-1:] == ["model"] and isinstance(error.instance, str)',
        "if False and isinstance(error.instance, str)",
        (T + "test_model_families.py::test_refused_family_is_refused_at_config_validation_with_the_reason",),
    ),
    Fault(
        "tv-grouped-conv-pruned",
        "channel groups that touch a grouped (RegNet, ResNeXt) conv are pruned like any other",
        "pwprune/pruning/graph.py",
        "            if any(_is_grouped_conv(item.dep.target.module) for item in group):",
        "            if False:",
        (T + "test_model_families.py::test_family_prunes_to_a_mac_target[regnet_x_400mf]",),
    ),
    # ---- CEAG constrained fine-tuning (issue 14, item 2)
    Fault(
        "ceag-multiplier-descends",
        "the multipliers step against the violation (descent instead of ascent)",
        "pwprune/ceag.py",
        "stepped = (multipliers + dual_lr * torch.nan_to_num(violations, nan=0.0))",
        "stepped = (multipliers - dual_lr * torch.nan_to_num(violations, nan=0.0))",
        (
            T + "test_ceag.py::test_dual_ascent_against_hand_arithmetic",
            T + "test_ceag.py::test_multipliers_rise_on_the_violated_group_and_fall_to_zero_on_the_satisfied_one",
        ),
    ),
    Fault(
        "ceag-no-projection",
        "a satisfied constraint drives its multiplier below 0 (no projection onto lambda >= 0)",
        "pwprune/ceag.py",
        "nan_to_num(violations, nan=0.0)).clamp(min=0.0)",
        "nan_to_num(violations, nan=0.0))",
        (
            T + "test_ceag.py::test_dual_ascent_against_hand_arithmetic",
            T + "test_ceag.py::test_multipliers_rise_on_the_violated_group_and_fall_to_zero_on_the_satisfied_one",
        ),
    ),
    Fault(
        "ceag-wrong-baseline",
        "each group's drop is measured against the model's own accuracy, not the dense model's",
        "pwprune/ceag.py",
        "self.dense_group_accuracy.to(logits.device),",
        "group_acc,",
        (
            T + "test_ceag.py::test_multipliers_rise_on_the_violated_group_and_fall_to_zero_on_the_satisfied_one",
            T + "test_ceag.py::test_fit_with_ceag_raises_the_minority_multiplier_logs_it_and_narrows_its_gap",
        ),
    ),
    Fault(
        "ceag-fit-skips-dual-step",
        "fit never applies the multipliers' ascent step",
        "pwprune/train.py",
        "                per_sample_fn.dual_step()\n",
        "                pass\n",
        (T + "test_ceag.py::test_fit_with_ceag_raises_the_minority_multiplier_logs_it_and_narrows_its_gap",),
    ),
    Fault(
        "ceag-resume-forgets-multipliers",
        "a resumed CEAG fine-tuning starts its multipliers from 0 again",
        "pwprune/train.py",
        '            per_sample_fn.load_state_dict(saved["loss_state"])\n',
        "            pass\n",
        (T + "test_ceag.py::test_a_resumed_ceag_fit_continues_with_the_saved_multipliers",),
    ),
    # ---- the fine-tuning convergence diagnostic (issue 29, item 1)
    Fault(
        "convergence-first-quarter",
        "the gain is the second quarter's over the first, not the last quarter's over the one before",
        "pwprune/convergence.py",
        "late, before = a[-q:], a[-2 * q : -q]",
        "late, before = a[q : 2 * q], a[:q]",
        (
            T + "test_convergence.py::test_group_verdicts_of_a_four_epoch_history_by_hand",
            T + "test_convergence.py::test_cell_verdicts_of_two_seeds_of_four_epochs_by_hand",
            T + "test_convergence.py::test_a_curve_that_rose_early_and_then_flattened_has_converged",
        ),
    ),
    Fault(
        "convergence-tolerance-ignores-n",
        "the binomial noise of a group's validation accuracy ignores its sample count n",
        "pwprune/convergence.py",
        "return math.sqrt(max(p * (1 - p), 0.0) / n) * math.sqrt(2 / q)",
        "return math.sqrt(max(p * (1 - p), 0.0)) * math.sqrt(2 / q)",
        (
            T + "test_convergence.py::test_group_verdicts_of_a_four_epoch_history_by_hand",
            T + "test_convergence.py::test_cell_verdicts_of_two_seeds_of_four_epochs_by_hand",
        ),
    ),
    Fault(
        "convergence-cell-ignores-seed-spread",
        "a cell's tolerance counts binomial noise only, not the spread of its seeds' gains",
        "pwprune/convergence.py",
        "spread = gain_sd / math.sqrt(k) if k > 1 else 0.0",
        "spread = 0.0",
        (T + "test_convergence.py::test_cell_verdicts_of_two_seeds_of_four_epochs_by_hand",),
    ),
    # ---- annealed schedules beside the convergence verdicts (pwprune/schedule.py)
    Fault(
        "schedule-first-epoch-lr",
        "a run's end learning rate is read at its first validated epoch, not its last",
        "pwprune/schedule.py",
        "ratios.append(lr[-1] / max(lr))",
        "ratios.append(lr[0] / max(lr))",
        (
            T + "test_convergence.py::test_end_lr_ratios_by_hand",
            T + "test_convergence.py::test_summary_notes_converged_cells_whose_learning_rate_had_annealed",
        ),
    ),
    Fault(
        "schedule-note-counts-unconverged-cells",
        "the note on annealed schedules counts cells that are still improving as converged ones",
        "pwprune/schedule.py",
        'converged = verdicts[verdicts["status"] == CONVERGED]',
        "converged = verdicts",
        (T + "test_convergence.py::test_summary_notes_converged_cells_whose_learning_rate_had_annealed",),
    ),
    # ---- modules run only for the log's text (pwprune.provenance LOG_ONLY_IMPORTS)
    Fault(
        "log-only-import-skipped-for-every-rule",
        "a module that one file uses only for its log is left out of every rule's code hash, "
        "also where another path uses it for a result",
        "pwprune/provenance.py",
        "    for f in code_files(*entries, root=root, follow_log_only=False):",
        "    skipped = {n for e in code_files(*entries, root=root) for n in log_only_imports(e)}\n"
        "    for f in code_files(*entries, root=root, follow_log_only=False):\n"
        "        if set(module_names([f], root)) & skipped:\n"
        "            continue",
        (T + "test_provenance.py::test_log_only_imports_are_run_but_hashed_only_where_another_path_reaches_them",),
    ),
    Fault(
        "finetune-verdicts-reach-history",
        "the fine-tuning stage stores its convergence verdicts in history.json, "
        "while its code hash leaves the criterion out",
        "pwprune/stages/finetune.py",
        "        for line in warnings(group_verdicts(history), context):",
        '        history[-1]["verdicts"] = group_verdicts(history)\n'
        "        for line in warnings(group_verdicts(history), context):",
        (T + "test_workflow.py::test_log_only_imports_reach_only_the_log",),
    ),
]


def apply(root: Path, fault: Fault) -> str:
    """Apply `fault` in the copy at root; returns the original text. Raises if the anchor is not
    found exactly once."""
    path = root / fault.path
    text = path.read_text()
    n = text.count(fault.anchor)
    if n != 1:
        raise SystemExit(
            f"FAULT {fault.name}: anchor found {n} times in {fault.path} (must be exactly once): "
            f"{fault.anchor!r}\nThe code moved or changed: update this fault in tests/faults.py."
        )
    path.write_text(text.replace(fault.anchor, fault.replacement))
    return text


PYTEST_ARGS = ("-x", "-q", "-p", "no:cacheprovider", "-rf")
# Imported once by this process, before the first fork (never pwprune: it must come from the copy):
# the third-party libraries pwprune and the tests import at module level (scipy.stats alone is ~1 s)
HEAVY = (
    "numpy",
    "pandas",
    "matplotlib.figure",
    "torch",
    "torchvision",
    "torch_pruning",
    "scipy.stats",
    "PIL.Image",
    "yaml",
    "jsonschema",
    "snakemake",
    "pytest",
)
REPO = HERE.parent
VENV = Path(sys.prefix).resolve()  # (within REPO: its site-packages are not the checkout's)
EXIT_WRONG_COPY = 86  # a forked child found the installed (unfaulted) package instead of the copy's


def pytest_run(root: Path, tests, env):
    """`python -m pytest` on `tests` in a new process (the --no-fork way)."""
    cmd = [sys.executable, "-m", "pytest", *PYTEST_ARGS, *tests]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    return proc, time.perf_counter() - t0


def _pwprune_loaded() -> list:
    return sorted(m for m in sys.modules if m == "pwprune" or m.startswith("pwprune."))


def preload() -> None:
    """Import the heavy third-party libraries once, so that every forked child has them."""
    if _pwprune_loaded():
        raise SystemExit(
            f"tests/faults.py: this process imported {_pwprune_loaded()[:3]} before forking; a child "
            "would test that (unfaulted) package, not the copy's. Run with --no-fork, or find the import."
        )
    import matplotlib

    matplotlib.use("Agg")  # what a process without a display picks anyway; no MPLBACKEND in the env
    for name in HEAVY:
        importlib.import_module(name)
    # (not the pytest11 plugins: pytest warns that it cannot rewrite a plugin imported before it)
    if _pwprune_loaded():
        raise SystemExit(f"tests/faults.py: importing {HEAVY} loaded {_pwprune_loaded()[:3]}; cannot fork")
    # the imported objects move to a generation gc never scans: the children's collections (pytest
    # runs two at its end) then walk only their own objects, not torch's (~0.7 s a child otherwise)
    gc.freeze()


def _under(path, root: Path) -> bool:
    """path (a str or None; relative: to the current directory) lies in the directory root (resolved)."""
    if not isinstance(path, str):
        return False
    path = os.path.abspath(path)
    return path == str(root) or path.startswith(str(root) + os.sep)


def _strays(root: Path) -> list:
    """Modules loaded from this checkout (not the copy at root, not the venv); __main__ is this script."""
    return sorted(
        name
        for name, mod in list(sys.modules.items())
        if name != "__main__"
        and _under(getattr(mod, "__file__", None), REPO)
        and not _under(mod.__file__, VENV)
        and not _under(mod.__file__, root)
    )


def _child(root: Path, tests, env) -> int:
    """In the forked child: run pytest on `tests` in the copy at root, as `python -m pytest` there would."""
    root = root.resolve()
    os.chdir(root)
    os.environ.clear()
    os.environ.update(env)  # PYTHONPATH=root: the Snakemake jobs and subprocesses the tests start
    sys.dont_write_bytecode = True  # what PYTHONDONTWRITEBYTECODE does at start-up (a fault keeps the size)
    # this checkout's tests/ (where helpers came from) and the editable install's path leave sys.path
    sys.path[:] = [str(root)] + [p for p in sys.path if not (_under(p, REPO) and not _under(p, VENV))]
    for name in _strays(root):  # helpers, imported from this checkout's tests/: the copy's must load
        del sys.modules[name]
    spec = importlib.util.find_spec("pwprune")
    if spec is None or not _under(spec.origin, root):
        print(f"tests/faults.py: the child would import pwprune from {spec and spec.origin!r}, not {root}")
        return EXIT_WRONG_COPY
    import pytest

    sys.argv = ["pytest", *PYTEST_ARGS, *tests]
    code = int(pytest.main([*PYTEST_ARGS, *tests]))
    files = {m: getattr(sys.modules[m], "__file__", None) for m in _pwprune_loaded()}
    wrong = [m for m, file in files.items() if file is not None and not _under(file, root)]
    wrong += _strays(root)
    if wrong:
        print(f"tests/faults.py: the tests ran modules from outside the copy {root}: {wrong[:5]}")
        return EXIT_WRONG_COPY
    return code


def fork_run(root: Path, tests, env):
    """Like pytest_run, in a child forked from this process (its imports already done)."""
    if _pwprune_loaded():
        raise SystemExit(f"tests/faults.py: the forking process has imported {_pwprune_loaded()[:3]}; refusing")
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into this script
            code = 70
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                code = _child(root, tests, env)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = (f.read().decode(errors="replace") for f in (out, err))
    if code == EXIT_WRONG_COPY:
        raise SystemExit(f"tests/faults.py: the faults would not apply:\n{stdout[-3000:]}{stderr[-3000:]}")
    return subprocess.CompletedProcess(["pytest.main", *tests], code, stdout, stderr), time.perf_counter() - t0


def passed_in_report(report: Path, selections) -> set:
    """The node ids of `selections` (a file, or a file::test with or without its [params]) that
    the JUnit XML `report` shows as passed: at least one test case selected, none of them failed,
    errored or skipped."""
    outcome = {}  # (classname, name) -> passed
    for case in ET.parse(report).getroot().iter("testcase"):
        bad = any(child.tag in ("failure", "error", "skipped") for child in case)
        outcome[(case.get("classname", ""), case.get("name", ""))] = not bad
    passed = set()
    for node in selections:
        path, _, test = node.partition("::")
        module = path.removesuffix(".py").replace("/", ".")
        cases = [
            ok
            for (cls, name), ok in outcome.items()
            if cls == module and (not test or name == test or ("[" not in test and name.startswith(test + "[")))
        ]
        if cases and all(cases):
            passed.add(node)
    return passed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tests/faults.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="print the faults and the tests named for each")
    ap.add_argument("--only", help="comma-separated fault names")
    ap.add_argument(
        "--passed-in",
        type=Path,
        help="JUnit XML of a pytest run on this checkout: the selections it shows passed skip the baseline run",
    )
    ap.add_argument(
        "--no-fork",
        action="store_true",
        help="start a new `python -m pytest` process per fault instead of forking this one (slower)",
    )
    args = ap.parse_args(argv)
    faults = FAULTS
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {f.name for f in FAULTS})
        if unknown:
            raise SystemExit(f"unknown fault(s) {unknown}; see --list")
        faults = [f for f in FAULTS if f.name in wanted]
    if args.list:
        for f in faults:
            print(
                f"{f.name}: {f.behaviour}\n  {f.path}: {f.anchor!r} -> {f.replacement!r}\n  caught by: "
                + ", ".join(f.tests)
            )
        return 0

    start = time.perf_counter()
    run = pytest_run if args.no_fork else fork_run
    if not args.no_fork:
        preload()
    with tempfile.TemporaryDirectory(prefix="pwprune-faults-") as tmp:
        root = copy_repo(Path(tmp) / "repo")
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
        if args.no_fork:  # (a forked child checks this itself, before and after its tests)
            where = subprocess.run(
                [sys.executable, "-c", "import pwprune; print(pwprune.__file__)"],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
            ).stdout.strip()
            if not where.startswith(str(root)):
                raise SystemExit(f"the copy's pwprune is not the one imported (got {where!r}); faults would not apply")
        for f in faults:  # every anchor first: a stale list fails before any test runs
            (root / f.path).write_text(apply(root, f))
        selection = sorted({t for f in faults for t in f.tests})
        reported = passed_in_report(args.passed_in, selection) if args.passed_in else set()
        if reported:
            print(f"baseline: {len(reported)} of {len(selection)} test selections passed in {args.passed_in}")
        rest = [t for t in selection if t not in reported]
        proc, secs = run(root, rest, env) if rest else (None, 0.0)
        ok = proc is None or proc.returncode == 0
        print(
            f"baseline: {len(rest)} test selections run on the unchanged code: "
            f"{'pass' if ok else 'FAIL'} ({secs:.0f} s)",
            flush=True,
        )
        if not ok:
            print(proc.stdout[-6000:] + proc.stderr[-3000:])
            print("the named tests must pass without any fault, or every fault would look caught")
            return 1
        survived, broken = [], []
        for f in faults:
            original = apply(root, f)
            try:
                proc, secs = run(root, f.tests, env)
            finally:
                (root / f.path).write_text(original)
            failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.M)
            if proc.returncode == 1 and failed:
                print(f"caught    {f.name} ({secs:.0f} s): {f.behaviour}\n          by {failed[0]}", flush=True)
            elif proc.returncode == 0:
                survived.append(f.name)
                print(
                    f"SURVIVED  {f.name} ({secs:.0f} s): {f.behaviour}\n          {', '.join(f.tests)} all pass",
                    flush=True,
                )
            else:
                broken.append(f.name)
                print(
                    f"BROKEN    {f.name} (pytest exit {proc.returncode}): not a behavioural fault\n"
                    + proc.stdout[-2000:]
                    + proc.stderr[-2000:],
                    flush=True,
                )
    print(
        f"\n{len(faults) - len(survived) - len(broken)} of {len(faults)} faults caught in "
        f"{time.perf_counter() - start:.0f} s"
        + (f"; survived: {', '.join(survived)}" if survived else "")
        + (f"; broken: {', '.join(broken)}" if broken else "")
    )
    return 1 if survived or broken else 0


if __name__ == "__main__":
    sys.exit(main())
