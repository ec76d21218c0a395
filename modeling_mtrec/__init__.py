"""modeling_mtrec: Hugging Face-native multi-task, text-aware news recommendation.

Importing the package registers MTRec and the two-tower retriever with `AutoConfig` and `AutoModel`, so a saved folder loads with
`AutoModel.from_pretrained(folder)`; `register_for_auto_class` also writes the code into saved folders, so a
folder pushed to the Hub loads with `AutoModel.from_pretrained(repo_id, trust_remote_code=True)`.
"""

from transformers import AutoConfig, AutoModel

from .configuration_mtrec import MTRecConfig
from .configuration_two_tower import TwoTowerConfig
from .inference import MTRecRecommender, NewsTitle, NewsVectorCache, fast_evaluate
from .modeling_mtrec import MTRecModel, MTRecOutput, MTRecPreTrainedModel
from .modeling_two_tower import TwoTowerModel, TwoTowerOutput, TwoTowerPreTrainedModel
from .models.foundation import FoundationConfig, FoundationModel, FoundationOutput, FoundationPreTrainedModel
from .trainer import MTRecTrainer, MTRecTrainingArguments
from .trainer_two_tower import TwoTowerTrainer, TwoTowerTrainingArguments

AutoConfig.register(MTRecConfig.model_type, MTRecConfig)
AutoModel.register(MTRecConfig, MTRecModel)
MTRecConfig.register_for_auto_class()
MTRecModel.register_for_auto_class("AutoModel")
AutoConfig.register(TwoTowerConfig.model_type, TwoTowerConfig)
AutoModel.register(TwoTowerConfig, TwoTowerModel)
TwoTowerConfig.register_for_auto_class()
TwoTowerModel.register_for_auto_class("AutoModel")
AutoConfig.register(FoundationConfig.model_type, FoundationConfig)
AutoModel.register(FoundationConfig, FoundationModel)
FoundationConfig.register_for_auto_class()
FoundationModel.register_for_auto_class("AutoModel")

__all__ = [
    "FoundationConfig",
    "FoundationModel",
    "FoundationOutput",
    "FoundationPreTrainedModel",
    "MTRecConfig",
    "MTRecModel",
    "MTRecOutput",
    "MTRecPreTrainedModel",
    "MTRecRecommender",
    "MTRecTrainer",
    "MTRecTrainingArguments",
    "NewsTitle",
    "NewsVectorCache",
    "TwoTowerConfig",
    "TwoTowerModel",
    "TwoTowerOutput",
    "TwoTowerPreTrainedModel",
    "TwoTowerTrainer",
    "TwoTowerTrainingArguments",
    "fast_evaluate",
]
