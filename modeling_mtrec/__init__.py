"""modeling_mtrec: Hugging Face-native multi-task, text-aware news recommendation.

Importing the package registers MTRec with `AutoConfig` and `AutoModel`, so a saved folder loads with
`AutoModel.from_pretrained(folder)`; `register_for_auto_class` also writes the code into saved folders, so a
folder pushed to the Hub loads with `AutoModel.from_pretrained(repo_id, trust_remote_code=True)`.
"""

from transformers import AutoConfig, AutoModel

from .configuration_mtrec import MTRecConfig
from .inference import MTRecRecommender, NewsTitle, NewsVectorCache, fast_evaluate
from .modeling_mtrec import MTRecModel, MTRecOutput, MTRecPreTrainedModel
from .trainer import MTRecTrainer, MTRecTrainingArguments

AutoConfig.register(MTRecConfig.model_type, MTRecConfig)
AutoModel.register(MTRecConfig, MTRecModel)
MTRecConfig.register_for_auto_class()
MTRecModel.register_for_auto_class("AutoModel")

__all__ = [
    "MTRecConfig",
    "MTRecModel",
    "MTRecOutput",
    "MTRecPreTrainedModel",
    "MTRecRecommender",
    "MTRecTrainer",
    "MTRecTrainingArguments",
    "NewsTitle",
    "NewsVectorCache",
    "fast_evaluate",
]
