"""Two-tower retriever configuration: self-supervised item tower (Yao et al.) with logQ correction (Yi et al.).

Papers:
- Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations", RecSys 2019
  (in-batch softmax with logQ correction, L2-normalised towers with a temperature, streaming frequency estimation).
- Yao et al., "Self-supervised Learning for Large-scale Item Recommendations", CIKM 2021, arXiv:2007.12865
  (contrastive loss on two augmented views of uniformly sampled items; feature masking, multi-value dropout,
  correlated feature masking; L = L_main + alpha * L_self).

Section numbers below are those of the arXiv versions of the two papers as best we could check them offline;
values marked "guessed" are not given (for data of this size) in either paper.
"""

from __future__ import annotations

from transformers import PreTrainedConfig

# The item features the item tower embeds, in the order of the masks and of the mutual-information matrix.
# "text" (a frozen text-encoder vector of the title) is appended when `text_embed_dim > 0`.
ITEM_FEATURES: tuple[str, ...] = ("item_id", "category", "subcategory", "entities", "words")
MULTI_VALUED_FEATURES: tuple[str, ...] = ("entities", "words")
LOGQ_MODES = ("off", "static", "streaming")
SSL_AUGMENTATIONS = ("random", "complementary", "correlated", "dropout")
DEFAULT_SSL_AUGMENTATIONS = ("correlated", "dropout")  # CFM, Yao et al.'s best masking, with multi-value dropout


class TwoTowerConfig(PreTrainedConfig):
    r"""
    Configuration of a [`TwoTowerModel`]: an item tower over hashed news features, a user tower over a hashed user
    id and the pooled item vectors of the user's clicks, both L2-normalised, score = cos(u, v) / temperature.

    Args:
        embedding_dim (`int`, *optional*, defaults to 64):
            Width of every feature embedding (guessed: Yao et al. use wide sparse embeddings on 500M-1B examples;
            64 suits MIND-sized corpora on CPU).
        item_id_buckets (`int`, *optional*, defaults to 100003):
            Hash buckets of the item-id embedding (hashing trick as in both papers' production models; size guessed).
        user_id_buckets (`int`, *optional*, defaults to 100003):
            Hash buckets of the user-id embedding (guessed).
        category_buckets (`int`, *optional*, defaults to 1009):
            Hash buckets of the category and subcategory embeddings (MIND has 18 / 285; guessed).
        entity_buckets (`int`, *optional*, defaults to 100003):
            Hash buckets of the title-entity (WikidataId) bag (guessed).
        word_buckets (`int`, *optional*, defaults to 100003):
            Hash buckets of the title-word bag (guessed).
        text_embed_dim (`int`, *optional*, defaults to 0):
            Width of the optional precomputed, frozen text-encoder vector of the title; 0 disables the feature.
        tower_hidden_sizes (`list[int]`, *optional*, defaults to `[256, 128]`):
            Hidden layers of each tower's ReLU MLP (Yi et al. Sec. 3 and Yao et al. Sec. 4 use ReLU MLP towers;
            widths guessed).
        output_dim (`int`, *optional*, defaults to 64):
            Width of the L2-normalised user and item vectors (guessed).
        temperature (`float`, *optional*, defaults to 0.05):
            τ of the main in-batch softmax, score = cos(u, v) / τ (Yi et al. Sec. 3 "normalization and
            temperature"; 0.05 is the value we remember them tuning to, unverified).
        ssl_temperature (`float`, *optional*, defaults to 0.1):
            τ of the self-supervised loss (Yao et al. Sec. 3.1 tune τ; 0.1 guessed).
        ssl_weight (`float`, *optional*, defaults to 0.3):
            α in L = L_main + α L_self (Yao et al. Sec. 3.3 tune α over a grid; 0.3 guessed). 0 disables SSL.
        ssl_augmentations (`list[str]`, *optional*, defaults to `["correlated", "dropout"]`):
            Augmentations of the SSL views, among `"random"` (each feature masked independently with
            `mask_rate`), `"complementary"` (features split at random into two disjoint groups, one masked per
            view: Yao et al.'s random feature masking), `"correlated"` (seed feature plus its most correlated
            features masked in one view, the rest in the other: Yao et al.'s CFM, their best, Sec. 3.2), and
            `"dropout"` (each value of a multi-valued feature dropped with `multi_value_dropout`, Sec. 3.2). When
            several masking schemes are listed, each item draws one of them uniformly (see modeling NOTE).
        mask_rate (`float`, *optional*, defaults to 0.5):
            Share of the features masked per view by `"random"` and `"correlated"` (Yao et al. Sec. 3.2: half).
        multi_value_dropout (`float`, *optional*, defaults to 0.5):
            Share of the values of a multi-valued feature dropped by `"dropout"` (Yao et al. Sec. 3.2: 50%).
        feature_mutual_information (`list[list[float]]`, *optional*):
            (F, F) mutual information between the item features, computed offline from the item corpus
            (`modeling_mtrec.models.two_tower.features.feature_mutual_information`); needed by `"correlated"`.
        logq_mode (`str`, *optional*, defaults to `"streaming"`):
            Sampling-bias correction of the in-batch softmax: `"off"`, `"static"` (log p_j passed in the batch as
            `item_log_q`, from a frequency table) or `"streaming"` (Yi et al. Sec. 4 frequency estimator).
        frequency_hash_buckets (`int`, *optional*, defaults to 1048576):
            H, size of the estimator's arrays A and B (Yi et al. Sec. 4; size guessed).
        frequency_num_hashes (`int`, *optional*, defaults to 2):
            m, hash functions of the multi-hash estimator; the largest B is used (Yi et al. Sec. 4.2, Algorithm 3).
        frequency_learning_rate (`float`, *optional*, defaults to 0.01):
            α of the estimator's moving average of the interval between two occurrences (Yi et al. Sec. 4).
        frequency_hash_seed (`int`, *optional*, defaults to 0):
            Seed of the estimator's universal hash parameters (stored as buffers, so restored with the weights).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialiser of embeddings and linear layers.
    """

    model_type = "two_tower_ssl"
    keys_to_ignore_at_inference = ["main_loss", "ssl_loss", "user_embeds", "item_embeds", "ssl_logits"]

    embedding_dim: int = 64
    item_id_buckets: int = 100_003
    user_id_buckets: int = 100_003
    category_buckets: int = 1009
    entity_buckets: int = 100_003
    word_buckets: int = 100_003
    text_embed_dim: int = 0
    tower_hidden_sizes: list[int] | None = None
    output_dim: int = 64
    temperature: float = 0.05
    ssl_temperature: float = 0.1
    ssl_weight: float = 0.3
    ssl_augmentations: list[str] | None = None
    mask_rate: float = 0.5
    multi_value_dropout: float = 0.5
    feature_mutual_information: list[list[float]] | None = None
    logq_mode: str = "streaming"
    frequency_hash_buckets: int = 1 << 20
    frequency_num_hashes: int = 2
    frequency_learning_rate: float = 0.01
    frequency_hash_seed: int = 0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.tower_hidden_sizes is None:
            self.tower_hidden_sizes = [256, 128]
        if self.ssl_augmentations is None:
            self.ssl_augmentations = list(DEFAULT_SSL_AUGMENTATIONS)
        self.tower_hidden_sizes = [int(h) for h in self.tower_hidden_sizes]
        self.ssl_augmentations = list(self.ssl_augmentations)
        for name in (
            "embedding_dim", "item_id_buckets", "user_id_buckets", "category_buckets", "entity_buckets",
            "word_buckets", "output_dim", "frequency_hash_buckets", "frequency_num_hashes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if not isinstance(self.text_embed_dim, int) or self.text_embed_dim < 0:
            raise ValueError(f"`text_embed_dim` must be a non-negative integer (0 = no text feature), got {self.text_embed_dim!r}")
        if any(h < 1 for h in self.tower_hidden_sizes):
            raise ValueError(f"`tower_hidden_sizes` must be positive, got {self.tower_hidden_sizes}")
        # Finite as well: an inf temperature or weight trains on NaN without any error.
        for name in ("temperature", "ssl_temperature", "initializer_range"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ValueError(f"`{name}` must be finite and > 0, got {getattr(self, name)}")
        if not 0 <= self.ssl_weight < float("inf"):
            raise ValueError(f"`ssl_weight` must be finite and >= 0, got {self.ssl_weight}")
        unknown = [a for a in self.ssl_augmentations if a not in SSL_AUGMENTATIONS]
        if unknown:
            raise ValueError(f"unknown `ssl_augmentations` {unknown}; choose among {SSL_AUGMENTATIONS}")
        for name in ("mask_rate", "multi_value_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {getattr(self, name)}")
        if self.logq_mode not in LOGQ_MODES:
            raise ValueError(f"`logq_mode` must be one of {LOGQ_MODES}, got {self.logq_mode!r}")
        if not 0.0 < self.frequency_learning_rate <= 1.0:
            raise ValueError(f"`frequency_learning_rate` must be in (0, 1], got {self.frequency_learning_rate}")
        if self.feature_mutual_information is not None:
            mi = [[float(x) for x in row] for row in self.feature_mutual_information]
            size = self.num_features
            if len(mi) != size or any(len(row) != size for row in mi):
                raise ValueError(
                    f"`feature_mutual_information` must be {size}x{size} (features {self.feature_names}), "
                    f"got {len(mi)} rows of lengths {sorted({len(r) for r in mi})}"
                )
            self.feature_mutual_information = mi
        super().__post_init__(**kwargs)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return ITEM_FEATURES + (("text",) if self.text_embed_dim > 0 else ())

    @property
    def num_features(self) -> int:
        return len(self.feature_names)


__all__ = [
    "DEFAULT_SSL_AUGMENTATIONS",
    "ITEM_FEATURES",
    "LOGQ_MODES",
    "MULTI_VALUED_FEATURES",
    "SSL_AUGMENTATIONS",
    "TwoTowerConfig",
]
