"""Serving: the recommender API (`MTRecRecommender`) and, in `serving.retrieval`, the two-tower retriever's
retrieve-then-rank. The news vector table they read is `modeling_mtrec.vectors.NewsVectorCache`."""

from .pipeline import NewsRecommendationPipeline, save_pipeline_code
from .recommender import MTRecRecommender, NewsTitle, Recommendation

__all__ = [
    "MTRecRecommender",
    "NewsRecommendationPipeline",
    "NewsTitle",
    "Recommendation",
    "save_pipeline_code",
]
