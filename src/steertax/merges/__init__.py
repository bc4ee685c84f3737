"""Merge methods, one module each, registered by name (:mod:`.registry`). Importing this package registers
the built-in ones: task arithmetic, TIES and DARE (peft), TSV-M and R-TSVM (torch), weight averaging."""

from . import average, peft_methods, tsv
from .registry import MERGE_REGISTRY, MergeMethod, merge_methods, register_merge_method
from .tsv import energy_rank, outlier_ratio, rtsvm_merge, thin_svd, tsvm_merge

__all__ = [
    "MERGE_REGISTRY",
    "MergeMethod",
    "merge_methods",
    "register_merge_method",
    "thin_svd",
    "tsvm_merge",
    "rtsvm_merge",
    "outlier_ratio",
    "energy_rank",
    "average",
    "peft_methods",
    "tsv",
]
