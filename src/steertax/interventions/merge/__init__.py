"""Merging as an intervention: task vectors and merged weights (:mod:`.weights`), and the merge methods, one
module each, registered by name with the parameters each declares (:mod:`.registry`). Importing this package
registers the built-in ones: task arithmetic, TIES and DARE (peft), TSV-M and R-TSVM (torch), weight averaging."""

from steertax.interventions.merge import average, peft_methods, tsv
from steertax.interventions.merge.peft_methods import DareParams, TiesParams
from steertax.interventions.merge.registry import (
    MERGE_REGISTRY,
    MergeMethod,
    NoParams,
    build_merge_params,
    merge_method,
    merge_methods,
    non_default_params,
    param,
    register_merge_method,
)
from steertax.interventions.merge.tsv import RTSVMParams, energy_rank, outlier_ratio, rtsvm_merge, thin_svd, tsvm_merge
from steertax.interventions.merge.weights import MergedIntervention, adapter_deltas, deltas_hash, merge_deltas, model_deltas

__all__ = [
    "MERGE_REGISTRY",
    "MergeMethod",
    "NoParams",
    "TiesParams",
    "DareParams",
    "RTSVMParams",
    "param",
    "merge_method",
    "build_merge_params",
    "non_default_params",
    "MergedIntervention",
    "adapter_deltas",
    "deltas_hash",
    "merge_deltas",
    "model_deltas",
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
