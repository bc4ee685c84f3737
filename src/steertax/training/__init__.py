"""Fine-tuning methods, each one file that declares itself (:mod:`steertax.training.registry`): its parameters,
knob, rows and trl trainer. Importing this package registers the built-in ones: DPO, regularized DPO, SFT,
selective alignment, ORPO, KTO, curriculum alignment and data quality (flipped preferences)."""

from steertax.training import curriculum, data_quality, dpo, dpo_reg, kto, orpo, selective, sft  # noqa: F401  (registration)
from steertax.training.data import RowsContext, data_fingerprint, preference_data, read_preferences
from steertax.training.registry import TRAINED_METHODS, Anchor, TrainedMethod, param, register_trained_method
from steertax.training.settings import AlignSetting, DataSettings, LoraSettings, TrainSettings
from steertax.training.trainer import lora_delta_sq_norm, lora_model, train_setting

__all__ = [
    "TRAINED_METHODS",
    "TrainedMethod",
    "Anchor",
    "param",
    "register_trained_method",
    "AlignSetting",
    "DataSettings",
    "LoraSettings",
    "TrainSettings",
    "RowsContext",
    "preference_data",
    "read_preferences",
    "data_fingerprint",
    "train_setting",
    "lora_model",
    "lora_delta_sq_norm",
]
