"""Batched sampled Gumbel search over the model protocol (knows no env, no replay)."""
from ezm.search.gumbel import (SearchOutput, chosen_heads, search, search_discrete, search_from_root, search_with_tree,
                               value_of)
from ezm.search.tree import Tree, considered_visits

__all__ = ["SearchOutput", "Tree", "chosen_heads", "considered_visits", "search", "search_discrete", "search_from_root",
           "search_with_tree", "value_of"]
