import os
import pickle

import pytest
import torch
import torch_pruning as tp

from pwprune import checkpoint, models
from pwprune.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pwprune.environment import numeric_environment

torch.set_num_threads(1)

ARCH = models.arch_dict("resnet20", 10, in_channels=3, input_size=16)


def _pruned_resnet20():
    torch.manual_seed(0)
    model = models.build_from_arch(ARCH)
    pruner = tp.pruner.BasePruner(
        model,
        models.example_input(ARCH),
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=0.5,
        ignored_layers=models.classifier_layers(model),
    )
    pruner.step()
    # give BatchNorm non-default running stats so the round trip has to carry buffers too
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 16, 16))
    return model.eval(), pruner.pruning_history()


def test_round_trip_of_pruned_model_gives_identical_outputs(tmp_path):
    model, history = _pruned_resnet20()
    dense_params = sum(p.numel() for p in models.build_from_arch(ARCH).parameters())
    assert sum(p.numel() for p in model.parameters()) < dense_params  # really pruned
    path = tmp_path / "sub" / "pruned.pt"
    save_checkpoint(path, model, ARCH, history=history, meta={"target_reduction": 0.5, "seed": 0})

    loaded, info = load_checkpoint(path)
    env = info["meta"].pop("environment")  # recorded by every save (pwprune.environment)
    assert env == numeric_environment("cpu")
    assert info["arch"] == ARCH and info["meta"] == {"target_reduction": 0.5, "seed": 0}
    assert len(info["history"]) == len(history) > 0
    assert not loaded.training
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert [p.shape for p in loaded.parameters()] == [p.shape for p in model.parameters()]
    # the file is plain data: loadable with weights_only=True by anyone
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "pwprune-checkpoint" and raw["version"] == 1


def test_round_trip_of_dense_model(tmp_path):
    model = models.build_from_arch(ARCH).eval()
    save_checkpoint(tmp_path / "dense.pt", model, ARCH)
    loaded, info = load_checkpoint(tmp_path / "dense.pt")
    assert info["history"] == [] and info["meta"] == {"environment": numeric_environment("cpu")}
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt.*no such checkpoint.*snakemake"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_and_corrupt_files(tmp_path):
    model = models.build_from_arch(ARCH)
    save_checkpoint(tmp_path / "good.pt", model, ARCH)
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"definitely not a checkpoint")
    (tmp_path / "empty.pt").write_bytes(b"")
    for name in ("truncated.pt", "garbage.pt", "empty.pt"):
        with pytest.raises(CheckpointError, match=rf"{name}: corrupt or truncated.*rerun"):
            load_checkpoint(tmp_path / name)


def test_foreign_file_bare_state_dict(tmp_path):
    model = models.build_from_arch(ARCH)
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match=r"bare\.pt: not a pwprune checkpoint.*bare state dict.*save_checkpoint"):
        load_checkpoint(tmp_path / "bare.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list\.pt: not a pwprune checkpoint"):
        load_checkpoint(tmp_path / "list.pt")


def test_other_architecture(tmp_path):
    # resnet20 weights labelled as a small_cnn, and pruned weights labelled with no history
    save_checkpoint(tmp_path / "a.pt", models.build_from_arch(ARCH), models.arch_dict("small_cnn", 10, 3, 16))
    with pytest.raises(CheckpointError, match=r"a\.pt: the weights do not fit architecture.*small_cnn"):
        load_checkpoint(tmp_path / "a.pt")
    model, _ = _pruned_resnet20()
    save_checkpoint(tmp_path / "b.pt", model, ARCH, history=None)
    with pytest.raises(CheckpointError, match=r"b\.pt: the weights do not fit.*size mismatch"):
        load_checkpoint(tmp_path / "b.pt")


class _Exploit:
    marker = None

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch", "pickle2", "pickle4"])
def test_unsafe_pickle_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = marker
    payload = {
        "format": "pwprune-checkpoint",
        "version": 1,
        "arch": ARCH,
        "history": [],
        "state_dict": {},
        "meta": {"x": exploit},
    }
    path = tmp_path / "evil.pt"
    if writer == "torch":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=int(writer[-1]))
    with open(tmp_path / "control", "wb") as f:  # the payload is live: plain pickle.loads runs it
        pickle.dump(exploit, f)
    pickle.loads((tmp_path / "control").read_bytes())
    assert marker.exists()
    marker.unlink()

    with pytest.raises(CheckpointError, match=r"evil\.pt: refusing to load.*could run code") as err:
        load_checkpoint(path)
    if writer != "pickle4":  # protocol 4 is refused even earlier, at its framing opcode
        assert "system" in str(err.value)
    assert "never load this file with weights_only switched off" in str(err.value)
    assert not marker.exists()


def test_refuses_to_save_non_finite_weights(tmp_path):
    model = models.build_from_arch(ARCH)
    with torch.no_grad():
        model.conv1.weight[0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    with pytest.raises(ValueError, match=r"nan\.pt.*non-finite.*conv1\.weight"):
        save_checkpoint(path, model, ARCH)
    assert not path.exists()


def test_refuses_meta_that_weights_only_cannot_load(tmp_path):
    import numpy as np

    with pytest.raises(ValueError, match="meta"):
        save_checkpoint(tmp_path / "m.pt", models.build_from_arch(ARCH), ARCH, meta={"acc": np.float64(0.5)})


def test_crash_mid_save_leaves_old_file_and_no_partial(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    old = models.build_from_arch(ARCH)
    save_checkpoint(path, old, ARCH, meta={"which": "old"})
    before = path.read_bytes()

    def crash(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, models.build_from_arch(ARCH), ARCH, meta={"which": "new"})
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "fresh.pt", old, ARCH)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert load_checkpoint(path)[1]["meta"]["which"] == "old"
    assert not (tmp_path / "fresh.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temp files left behind
