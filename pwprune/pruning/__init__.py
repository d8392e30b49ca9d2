"""Structured (channel) pruning to a MAC-reduction target.

scorers.py     every method as one scorer, score(model, layout, data, **options) -> one score
               per channel, and SCORERS, the one table of them (random, magnitude, taylor, autobot,
               fairgrape, fairprune)
fair.py        the group-aware baselines' per-group importance: FairGRAPE's Taylor terms and greedy
               share-keeping order, FairPrune's Fisher saliency (docs/fair-baselines.md)
importance.py  the criteria and probes the scorers use: filter norms, per-group normalisation,
               gates and activation x gradient probes on feature maps
autobot.py     AutoBot's trainable gates (their values are its scores) and its authors' threshold search
trajectory.py  Taylor's trajectory as the authors run it (schedule "authors"), resumable across targets
graph.py       Torch-Pruning dependency groups, the flat channel layout, the MAC estimate, the surgery
loop.py        the batch stream and loss of the data-driven methods
target.py      prune_to_target: ranking + bisection to the target, in one round, geometric rounds
               or Taylor's trajectory
"""

from .scorers import SCORERS, ScoringData
from .target import PRUNING_METHODS, PruneResult, prune_to_target

__all__ = ["PRUNING_METHODS", "SCORERS", "PruneResult", "ScoringData", "prune_to_target"]
