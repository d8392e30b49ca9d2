"""Validation after every epoch and early stopping (pwprune.train.fit's validate and
early_stopping): the check changes no weight, the stop comes after `patience` epochs without
improvement, the best epoch's weights are restored, and a killed run resumes to the same result."""

from __future__ import annotations

import copy

import pytest
from test_resume import KillAt, Killed, run, same

from pwprune.loss import make_loss
from pwprune.train import Resume


class Scripted:
    """A validate callable that reports the given losses in turn and keeps each epoch's weights."""

    def __init__(self, losses, groups=(("a", 0.5), ("b", 0.4))):
        self.losses, self.groups, self.states = list(losses), groups, []

    def __call__(self, model):
        self.states.append(copy.deepcopy(model.state_dict()))
        loss = self.losses[len(self.states) - 1]
        return {
            "loss": loss,
            "accuracy": 1 - loss / 2,
            "groups": [{"group": g, "n": 10, "accuracy": a, "loss": loss} for g, a in self.groups],
        }


def test_validation_changes_no_weight_and_is_recorded_per_epoch():
    want, _ = run()
    check = Scripted([0.9, 0.8, 0.7])
    got, history = run(validate=check)
    assert same(got, want)
    assert [h["val"]["loss"] for h in history] == [0.9, 0.8, 0.7]
    assert [g["group"] for g in history[0]["val"]["groups"]] == ["a", "b"]
    assert "early_stopping" not in history[-1]


def test_stops_after_patience_and_restores_the_best_epoch():
    check = Scripted([1.0, 0.8, 0.85, 0.9, 0.7, 0.6])
    lines = []
    got, history = run(epochs=6, validate=check, early_stopping={"patience": 2}, log=lines.append)
    assert len(history) == 4  # best at epoch 2, no improvement at 3 and 4: stop after epoch 4
    assert history[-1]["early_stopping"] == {"best_epoch": 2, "stopped_epoch": 4, "monitor": "loss", "restored": True}
    assert same(got, check.states[1])  # the weights validated at epoch 2
    assert any("early stopping at epoch 4/6" in line for line in lines), lines


def test_min_delta_monitor_and_no_restore():
    # accuracy = 1 - loss / 2: 0.5, 0.55, 0.5525 (< 0.55 + min_delta 0.01), ... stop after epoch 4
    check = Scripted([1.0, 0.9, 0.895, 0.89, 0.5])
    got, history = run(
        epochs=5,
        validate=check,
        early_stopping={"patience": 2, "monitor": "accuracy", "min_delta": 0.01, "restore_best": False},
    )
    assert history[-1]["early_stopping"]["best_epoch"] == 2 and len(history) == 4
    assert not history[-1]["early_stopping"]["restored"] and same(got, check.states[3])


def test_worst_group_monitor_and_running_to_the_maximum():
    check = Scripted([1.0, 0.9, 0.8], groups=(("a", 0.9), ("b", 0.3)))
    _, history = run(epochs=3, validate=check, early_stopping={"patience": 5, "monitor": "worst_group_accuracy"})
    assert len(history) == 3  # the worst group never improves: best stays epoch 1, patience not reached
    assert history[-1]["early_stopping"] == {
        "best_epoch": 1,
        "stopped_epoch": 3,
        "monitor": "worst_group_accuracy",
        "restored": True,
    }


def test_bad_options_and_no_validation_are_refused_before_training():
    with pytest.raises(ValueError, match="early_stopping needs a validation split"):
        run(early_stopping={"patience": 2})
    with pytest.raises(ValueError, match="early_stopping.monitor must be one of"):
        run(validate=Scripted([1, 1, 1]), early_stopping={"patience": 2, "monitor": "auroc"})
    with pytest.raises(ValueError, match="early_stopping.patience must be an integer >= 1"):
        run(validate=Scripted([1, 1, 1]), early_stopping={"patience": 0})


def test_a_killed_run_with_early_stopping_resumes_to_the_same_weights(tmp_path):
    losses = [1.0, 0.8, 0.85, 0.9, 0.7]
    want, want_history = run(epochs=5, validate=Scripted(losses), early_stopping={"patience": 2})
    resume = Resume(tmp_path / "model.pt.resume", "es", every_seconds=0.0)
    with pytest.raises(Killed):  # killed in epoch 3 (6 batches an epoch), after the best epoch 2
        run(
            epochs=5,
            resume=resume,
            loss=KillAt(make_loss("ce"), 15),
            validate=Scripted(losses),
            early_stopping={"patience": 2},
        )
    resumed = Scripted(losses[2:])  # the rerun validates epochs 3 and 4 only
    got, history = run(epochs=5, resume=resume, validate=resumed, early_stopping={"patience": 2})
    assert same(got, want)  # epoch 2's weights, kept in the resume state and restored
    assert [h["val"]["loss"] for h in history] == [h["val"]["loss"] for h in want_history]
    assert history[-1]["early_stopping"] == want_history[-1]["early_stopping"]
