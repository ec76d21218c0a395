"""modeling_mtrec: Hugging Face-native multi-task, text-aware news recommendation.

Importing the package registers every model with `AutoConfig` and `AutoModel`, so a saved folder loads with
`AutoModel.from_pretrained(folder)`; `register_for_auto_class` also writes the model's code into saved folders, so
a folder pushed to the Hub loads with `AutoModel.from_pretrained(repo_id, trust_remote_code=True)`.

Where things live: `models/<name>/` (one folder per model: configuration, modeling, its processing and collator),
`training/` (each model's Trainer on one multi-task base, the gradient surgery, the model-card writer), `data/` (MIND readers -> samples -> corpus), `evaluation/`,
`serving/`, and `scoring.py` (the scoring interface every model offers).
"""

from transformers import AutoConfig, AutoModel

from .evaluation.impressions import fast_evaluate, news_vector_cache
from .models.foundation import FoundationConfig, FoundationModel, FoundationOutput, FoundationPreTrainedModel
from .models.mtrec import MTRecConfig, MTRecModel, MTRecOutput, MTRecPreTrainedModel
from .models.mtrec.corpus import load_mind
from .models.two_tower import TwoTowerConfig, TwoTowerModel, TwoTowerOutput, TwoTowerPreTrainedModel
from .models.two_tower.corpus import load_retrieval_corpus
from .scoring import ScoringModel
from .serving import MTRecRecommender, NewsTitle
from .serving.pipeline import NewsRecommendationPipeline
from .training import GradientSurgery
from .training.base import BaseTrainer, TrainingDivergedError
from .training.foundation import FoundationDataset, FoundationTrainer, FoundationTrainingArguments
from .training.mtrec import MTRecTrainer, MTRecTrainingArguments
from .training.multitask import MultiTaskTrainer
from .training.two_tower import TwoTowerTrainer, TwoTowerTrainingArguments
from .vectors import NewsVectorCache, TextFeatureCache

# Every model of the package, as (configuration, model) pairs: a new model adds its pair here.
MODELS = ((MTRecConfig, MTRecModel), (TwoTowerConfig, TwoTowerModel), (FoundationConfig, FoundationModel))

for _config_class, _model_class in MODELS:
    AutoConfig.register(_config_class.model_type, _config_class)
    AutoModel.register(_config_class, _model_class)
    _config_class.register_for_auto_class()
    _model_class.register_for_auto_class("AutoModel")
del _config_class, _model_class

__all__ = [
    "MODELS",
    "BaseTrainer",
    "FoundationConfig",
    "FoundationDataset",
    "FoundationModel",
    "FoundationOutput",
    "FoundationPreTrainedModel",
    "FoundationTrainer",
    "FoundationTrainingArguments",
    "GradientSurgery",
    "MTRecConfig",
    "MTRecModel",
    "MTRecOutput",
    "MTRecPreTrainedModel",
    "MTRecRecommender",
    "MTRecTrainer",
    "MTRecTrainingArguments",
    "MultiTaskTrainer",
    "NewsRecommendationPipeline",
    "NewsTitle",
    "NewsVectorCache",
    "ScoringModel",
    "TrainingDivergedError",
    "TextFeatureCache",
    "TwoTowerConfig",
    "TwoTowerModel",
    "TwoTowerOutput",
    "TwoTowerPreTrainedModel",
    "TwoTowerTrainer",
    "TwoTowerTrainingArguments",
    "fast_evaluate",
    "load_mind",
    "load_retrieval_corpus",
    "news_vector_cache",
]
