"""Taylor on the authors' schedule: one trajectory that serves every target (issue 12, item 4).

What must hold: continuing from the saved state of a smaller target gives bit for bit what one
uninterrupted trajectory gives when it is stopped at both targets; a step removes exactly the
lowest-scored channels (|activation x gradient| on that step's batch, eval mode, after B plain
SGD steps); the data stream depends only on (seed, batch number); a state made with other
settings is refused."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from pwprune.checkpoint import load_checkpoint, save_checkpoint
from pwprune.data.dataset import SplitDataset
from pwprune.models import arch_dict, build_from_arch, example_input
from pwprune.pruning import prune_to_target
from pwprune.pruning.graph import Layout, build_graph
from pwprune.pruning.importance import ChannelHooks
from pwprune.pruning.loop import forward_loss
from pwprune.pruning.trajectory import load_state, save_state, seeded_batches, taylor_trajectory
from pwprune.train import make_loader

OPTS = {"batches_per_step": 2, "prunes_per_step": 8, "lr": 0.05, "momentum": 0.9, "min_channels": 1}


class Split:
    def __init__(self, x, y, g):
        self.x, self.y, self.g = x, y, g


def dataset(n=40, size=12, augment=False, seed=0):
    rng = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), generator=rng, dtype=torch.uint8).numpy()
    y = torch.randint(0, 3, (n,), generator=rng).numpy()
    g = torch.randint(0, 2, (n,), generator=rng).numpy()
    meta = {"mean": [0.5] * 3, "std": [0.25] * 3, "input_size": size}
    return SplitDataset(Split(x, y, g), meta, augment=augment)


def ce(logits, teacher_logits, targets):
    return F.cross_entropy(logits, targets)


def dense(name="resnet20", size=12):
    torch.manual_seed(0)
    arch = arch_dict(name, 3, 3, size)
    return arch, build_from_arch(arch)


def run(model, targets, arch, ds, resume=None, opts=OPTS, seed=0):
    return taylor_trajectory(
        model,
        targets,
        example_input(arch),
        dataset=ds,
        batch_size=8,
        loss_fn=ce,
        seed=seed,
        opts=opts,
        resume=resume,
        log=lambda *a: None,
    )


@pytest.mark.slow
def test_continuing_from_a_smaller_target_equals_one_uninterrupted_trajectory(tmp_path):
    arch, model = dense()
    ds = dataset()
    t1, t2 = 0.25, 0.45
    whole = run(copy.deepcopy(model), [t1, t2], arch, ds)

    first = run(copy.deepcopy(model), [t1], arch, ds)[0]
    save_state(tmp_path / "t1.pt", first["state"])
    resumed = run(copy.deepcopy(model), [t2], arch, ds, resume=load_state(tmp_path / "t1.pt"))[0]

    assert torch.equal(first["removed"], whole[0]["removed"]) and first["batches"] == whole[0]["batches"]
    assert torch.equal(resumed["removed"], whole[1]["removed"])
    assert resumed["batches"] == whole[1]["batches"] > first["batches"]
    assert whole[1]["removed"].sum() > whole[0]["removed"].sum()
    for k, v in whole[1]["state"]["state_dict"].items():
        assert torch.equal(v, resumed["state"]["state_dict"][k]), k
    for a, b in zip(whole[1]["state"]["momentum"], resumed["state"]["momentum"]):
        assert (a is None and b is None) or torch.equal(a, b)
    # the trajectory really trained: the weights are not the dense ones any more
    assert not torch.equal(whole[1]["state"]["state_dict"]["conv1.weight"], model.state_dict()["conv1.weight"])
    # and the two snapshots reached their targets (estimated MACs) without a note
    assert whole[0]["reduction"] >= t1 and whole[1]["reduction"] >= t2
    assert whole[0]["note"] == whole[1]["note"] == ""


@pytest.mark.slow
def test_prune_to_target_continues_through_a_checkpointed_chain(tmp_path):
    """The pipeline's path: the target-k job gets the state file of target k-1 and a freshly
    loaded dense model; its pruned model equals the one-job trajectory's, checkpoints included."""
    arch, model = dense()
    ds = dataset()
    loader = make_loader(ds, batch_size=8, shuffle=True, seed=0)
    ex = example_input(arch)
    opts = {"schedule": "authors", **{k: OPTS[k] for k in ("batches_per_step", "prunes_per_step", "lr", "momentum")}}

    def prune(target, trajectory=None):
        m = copy.deepcopy(model)
        return prune_to_target(
            m,
            "taylor",
            target,
            ex,
            loader=loader,
            loss_fn=ce,
            seed=0,
            tolerance=0.05,
            log=lambda *a: None,
            trajectory=trajectory,
            **opts,
        )

    small = prune(0.25)
    save_state(tmp_path / "traj.pt", small.trajectory)
    chained = prune(0.45, trajectory=load_state(tmp_path / "traj.pt"))
    direct = prune(0.45)
    assert chained.history == direct.history and chained.macs_after == direct.macs_after
    for path, r in (("chained.pt", chained), ("direct.pt", direct)):
        save_checkpoint(tmp_path / path, r.model, arch, history=r.history)
    a, _ = load_checkpoint(tmp_path / "chained.pt")
    b, _ = load_checkpoint(tmp_path / "direct.pt")
    x = torch.randn(4, 3, 12, 12)
    assert torch.equal(a(x), b(x))
    assert abs(chained.achieved_reduction - 0.45) <= 0.05, chained.note
    # the dense model was not pruned in place: the pruned model is a separate, smaller copy
    assert chained.model is not model and chained.params_after < chained.params_before


def test_a_step_removes_the_lowest_scored_channels_after_B_sgd_batches():
    """One pruning step checked by hand: B plain SGD steps on the stream's first B batches, then
    |sum of activation x gradient| on the B-th batch in eval mode; the P lowest go."""
    arch, model = dense("small_cnn")
    ds = dataset()
    opts = {**OPTS, "momentum": 0.0, "prunes_per_step": 2, "batches_per_step": 3}
    hand = copy.deepcopy(model)
    ex = example_input(arch)
    layout = Layout(hand, build_graph(hand, ex), ex)
    opt = torch.optim.SGD(hand.parameters(), lr=opts["lr"])
    stream = seeded_batches(ds, 8, 0)
    for _ in range(3):
        _, batch = next(stream)
        hand.train()
        loss = forward_loss(hand, batch, ce, None, "cpu")
        opt.zero_grad()
        loss.backward()
        opt.step()
    hand.eval()
    hooks = ChannelHooks(hand, layout, "probe")
    forward_loss(hand, batch, ce, None, "cpu").backward()
    scores, _ = hooks.taylor_batch()
    hooks.remove()
    expected = set(torch.argsort(scores, stable=True)[:2].tolist())

    tiny = 1e-6  # any removal reaches it: the trajectory stops after exactly one step
    snap = run(copy.deepcopy(model), [tiny], arch, ds, opts=opts)[0]
    assert set(torch.nonzero(snap["removed"]).flatten().tolist()) == expected
    # one step after 3 batches, then 3 more batches until the next check finds the target met
    assert snap["batches"] == 6


def test_batch_stream_depends_only_on_seed_and_batch_number():
    for augment in (False, True):
        ds = dataset(augment=augment)
        full = seeded_batches(ds, 8, 5)
        batches = [next(full) for _ in range(9)]
        late = seeded_batches(ds, 8, 5, start=6)
        for n in (6, 7, 8):
            b, batch = next(late)
            assert b == n
            for a, c in zip(batch, batches[n][1]):
                assert torch.equal(a, c)
        # every pass is a permutation of the whole split (5 batches of 8 per pass here)
        seen = torch.cat([batches[n][1][3] for n in range(5)])
        assert sorted(seen.tolist()) == list(range(40))
        other = next(seeded_batches(ds, 8, 6))[1]
        assert not torch.equal(other[3], batches[0][1][3])


def test_a_state_from_other_settings_is_refused():
    arch, model = dense()
    ds = dataset()
    state = run(copy.deepcopy(model), [0.2], arch, ds)[0]["state"]
    with pytest.raises(ValueError, match=r"lr \(saved 0.05, now 0.01\)"):
        run(copy.deepcopy(model), [0.4], arch, ds, resume=state, opts={**OPTS, "lr": 0.01})
    with pytest.raises(ValueError, match=r"seed"):
        run(copy.deepcopy(model), [0.4], arch, ds, resume=state, seed=1)


def test_schedule_options_are_checked():
    arch, model = dense()
    loader = make_loader(dataset(), batch_size=8, shuffle=True, seed=0)
    common = dict(loader=loader, loss_fn=ce, log=lambda *a: None)
    with pytest.raises(ValueError, match="schedule must be one of geometric, authors"):
        prune_to_target(model, "taylor", 0.5, example_input(arch), schedule="molchanov", **common)
    with pytest.raises(ValueError, match=r"\['steps'\] apply only to schedule 'geometric'"):
        prune_to_target(model, "taylor", 0.5, example_input(arch), schedule="authors", steps=3, **common)
    with pytest.raises(ValueError, match="trajectory= continues a Taylor trajectory"):
        prune_to_target(model, "magnitude", 0.5, example_input(arch), trajectory={}, log=lambda *a: None)


# ---------------------------------------------------------------- in the workflow


@pytest.mark.e2e
def test_the_dag_chains_taylor_targets_and_the_chained_job_continues(repo_copy):
    """With schedule "authors", the prune job at a target takes the pruned checkpoint of the next
    smaller target as input and continues its trajectory; the result equals the library's one
    uninterrupted trajectory; the geometric schedule has no chain."""
    import yaml

    from helpers import snakemake
    from pwprune.checkpoint import load_checkpoint

    cfg = yaml.safe_load((repo_copy / "tests" / "smoke.yaml").read_text())
    exp = cfg["experiments"]["smoke"]
    exp["prune"].update(methods=["taylor", "magnitude"], targets=[0.875, 0.5])  # order must not matter
    exp["prune"]["taylor"] = {
        "schedule": "authors",
        "batches_per_step": 2,
        "prunes_per_step": 4,
        "lr": 0.01,
        "momentum": 0.0,
    }
    exp["losses"] = ["pw"]
    exp.pop("ablation")
    (repo_copy / "chain.yaml").write_text(yaml.safe_dump(cfg))
    big = "results/smoke/seed0/pruned/taylor-pw/0.875/model.pt"
    small = "results/smoke/seed0/pruned/taylor-pw/0.5/model.pt"
    proc = snakemake(repo_copy, big, "-n", "--configfile=chain.yaml", "--printshellcmds")
    listing = proc.stdout
    block = listing[listing.index("pruned/taylor-pw/0.875/model.pt") - 2000 :]
    assert small in listing and "taylor-pw/0.5" in block, listing[-3000:]
    # magnitude is never chained: its 0.875 job reads only the dense model
    proc = snakemake(
        repo_copy, "results/smoke/seed0/pruned/magnitude-none/0.875/model.pt", "-n", "--configfile=chain.yaml"
    )
    assert "magnitude-none/0.5" not in proc.stdout

    snakemake(repo_copy, big, "--cores", "1", "--configfile=chain.yaml")
    log = (repo_copy / "logs/smoke/seed0/prune/taylor-pw/0.875.log").read_text()
    assert "continuing the Taylor trajectory saved at target 0.5000" in log, log
    info = json.loads((repo_copy / "results/smoke/seed0/pruned/taylor-pw/0.875/prune.json").read_text())
    assert info["continued_from"].endswith(small) and info["within_tolerance"], info
    # the chained job's model equals one uninterrupted trajectory straight to 0.875
    from pwprune.stages.prune import prune_stage

    direct = repo_copy / "direct"
    params = {
        "method": "taylor",
        "target": 0.875,
        "tolerance": 0.02,
        "loss": "pw",
        "batch_size": 128,
        "augment": False,
        "pw": {"min_weight": 0.5, "gamma": 1.0},
        "options": exp["prune"]["taylor"],
    }
    dense = repo_copy / "results/smoke/seed0/dense"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the job ran (its rule's threads): sums in another order differ in the last bits
    try:
        prune_stage(
            repo_copy / "data/prepared/smoke",
            dense / "model.pt",
            dense / "teacher.pt",
            params,
            0,
            "cpu",
            "direct",
            out={"model": direct / "model.pt", "info": direct / "info.json"},
            log=lambda *a: None,
        )
    finally:
        torch.set_num_threads(threads)
    a, ia = load_checkpoint(repo_copy / big)
    b, ib = load_checkpoint(direct / "model.pt")
    assert ia["history"] == ib["history"]
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
