"""modeling_mtrec: Hugging Face-native multi-task, text-aware news recommendation.

Importing the package registers MTRec and the two-tower retriever with `AutoConfig` and `AutoModel`, so a saved folder loads with
`AutoModel.from_pretrained(folder)`; `register_for_auto_class` also writes the code into saved folders, so a
folder pushed to the Hub loads with `AutoModel.from_pretrained(repo_id, trust_remote_code=True)`.
"""

from transformers import AutoConfig, AutoModel

from .evaluation.fast import fast_evaluate
from .models.mtrec import MTRecConfig, MTRecModel, MTRecOutput, MTRecPreTrainedModel
from .models.mtrec.trainer import MTRecTrainer, MTRecTrainingArguments
from .models.two_tower import TwoTowerConfig, TwoTowerModel, TwoTowerOutput, TwoTowerPreTrainedModel
from .models.two_tower.trainer import TwoTowerTrainer, TwoTowerTrainingArguments
from .serving import MTRecRecommender, NewsTitle, NewsVectorCache

AutoConfig.register(MTRecConfig.model_type, MTRecConfig)
AutoModel.register(MTRecConfig, MTRecModel)
MTRecConfig.register_for_auto_class()
MTRecModel.register_for_auto_class("AutoModel")
AutoConfig.register(TwoTowerConfig.model_type, TwoTowerConfig)
AutoModel.register(TwoTowerConfig, TwoTowerModel)
TwoTowerConfig.register_for_auto_class()
TwoTowerModel.register_for_auto_class("AutoModel")

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
    "TwoTowerConfig",
    "TwoTowerModel",
    "TwoTowerOutput",
    "TwoTowerPreTrainedModel",
    "TwoTowerTrainer",
    "TwoTowerTrainingArguments",
    "fast_evaluate",
]
