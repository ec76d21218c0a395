"""modeling_mtrec: Hugging Face-native multi-task, text-aware news recommendation.

Importing the package registers every model with `AutoConfig` and `AutoModel`, so a saved folder loads with
`AutoModel.from_pretrained(folder)`; `register_for_auto_class` also writes the model's code into saved folders, so
a folder pushed to the Hub loads with `AutoModel.from_pretrained(repo_id, trust_remote_code=True)`.

Where things live: `models/<name>/` (one folder per model: configuration, modeling, its processing, collator and
Trainer), `training/` (what every Trainer shares), `data/` (MIND readers -> samples -> corpus), `evaluation/`,
`serving/`, and `scoring.py` (the scoring interface every model offers).
"""

from transformers import AutoConfig, AutoModel

from ._legacy import install as _install_legacy_module_paths
from .evaluation.fast import fast_evaluate
from .models.foundation import FoundationConfig, FoundationModel, FoundationOutput, FoundationPreTrainedModel
from .models.mtrec import MTRecConfig, MTRecModel, MTRecOutput, MTRecPreTrainedModel
from .models.mtrec.trainer import MTRecTrainer, MTRecTrainingArguments
from .models.two_tower import TwoTowerConfig, TwoTowerModel, TwoTowerOutput, TwoTowerPreTrainedModel
from .models.two_tower.trainer import TwoTowerTrainer, TwoTowerTrainingArguments
from .scoring import ScoringModel
from .serving import MTRecRecommender, NewsTitle, NewsVectorCache
from .serving.pipeline import NewsRecommendationPipeline
from .training import GradientSurgery

# Every model of the package, as (configuration, model) pairs: a new model adds its pair here.
MODELS = ((MTRecConfig, MTRecModel), (TwoTowerConfig, TwoTowerModel), (FoundationConfig, FoundationModel))

for _config_class, _model_class in MODELS:
    AutoConfig.register(_config_class.model_type, _config_class)
    AutoModel.register(_config_class, _model_class)
    _config_class.register_for_auto_class()
    _model_class.register_for_auto_class("AutoModel")
del _config_class, _model_class

# Old module paths (e.g. `modeling_mtrec.inference`) keep importing, with a DeprecationWarning.
_install_legacy_module_paths()

__all__ = [
    "MODELS",
    "FoundationConfig",
    "FoundationModel",
    "FoundationOutput",
    "FoundationPreTrainedModel",
    "GradientSurgery",
    "MTRecConfig",
    "MTRecModel",
    "MTRecOutput",
    "MTRecPreTrainedModel",
    "MTRecRecommender",
    "MTRecTrainer",
    "MTRecTrainingArguments",
    "NewsRecommendationPipeline",
    "NewsTitle",
    "NewsVectorCache",
    "ScoringModel",
    "TwoTowerConfig",
    "TwoTowerModel",
    "TwoTowerOutput",
    "TwoTowerPreTrainedModel",
    "TwoTowerTrainer",
    "TwoTowerTrainingArguments",
    "fast_evaluate",
]
