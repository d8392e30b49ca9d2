"""Structured (channel) pruning to a MAC-reduction target.

    importance.py  channel scores: random, magnitude (filter norm), Taylor (activation x gradient)
    autobot.py     AutoBot's trainable gates (their values are the scores)
    graph.py       Torch-Pruning dependency groups, the MAC estimate, the surgery
    target.py      ranking + bisection to the target, Taylor's iterative rounds, prune_to_target
"""

from .target import PRUNING_METHODS, PruneResult, prune_to_target

__all__ = ["PRUNING_METHODS", "PruneResult", "prune_to_target"]
