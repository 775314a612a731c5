"""Scale-out builds of gallery stores: a Ray Data engine, and Ray-free sharded builds joined by a merge.

The Ray engine (:mod:`.ray_engine`) needs the optional extra ``diffsim-metric[ray]``; partitions
(:mod:`.partition`) and merging (:mod:`.merge`) need nothing beyond diffsim itself.
"""

from .merge import merge_stores
from .partition import Partition, part_path, resolve_partition, select_part

__all__ = ["Partition", "merge_stores", "part_path", "resolve_partition", "select_part"]
