"""Serving: the news/item vector cache, the recommender API, and (in `serving.retrieval`, which imports faiss)
the two-tower retriever's index and retrieve-then-rank."""

from .cache import NewsVectorCache, StaleCacheError, encode_titles, news_encoder_fingerprint
from .pipeline import NewsRecommendationPipeline, save_pipeline_code
from .recommender import MTRecRecommender, NewsTitle, Recommendation

__all__ = [
    "MTRecRecommender",
    "NewsRecommendationPipeline",
    "NewsTitle",
    "NewsVectorCache",
    "Recommendation",
    "StaleCacheError",
    "encode_titles",
    "news_encoder_fingerprint",
    "save_pipeline_code",
]
