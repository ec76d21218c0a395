"""MTRec model configuration.

Defaults follow Bi et al., "MTRec: Multi-Task Learning over BERT for News Recommendation",
Findings of ACL 2022 (https://aclanthology.org/2022.findings-acl.209), and the MIND setup it reports.
"""

from __future__ import annotations

import os
import re

from transformers import BertConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

# BIO over MIND's untyped title entities: the paper tags entity mentions, not entity types.
DEFAULT_NER_LABELS = ["O", "B", "I"]


_HUB_ID = re.compile(r"[\w\-]+(\.[\w\-]+)*(/[\w\-.]+)?")  # "name" or "org/name"


def encoder_hub_id(name_or_path: str | os.PathLike | None) -> str | None:
    """What a config records as the encoder's checkpoint: never a path of the machine that trained it.

    A local folder becomes the Hub id of the checkpoint it holds when that is known (the folder of the package's
    offline default encoder: its Hub id), else None; anything else that can be a Hub id (``name``, ``org/name``) is
    kept. A config read from a saved folder holds a Hub id or None already, so the package is only imported (to know
    the offline default) when a local folder is given, i.e. when training with it, never as Hub remote code.
    """
    if name_or_path is None:
        return None
    value = os.fspath(name_or_path)
    if not os.path.exists(value):
        return value if _HUB_ID.fullmatch(value) else None
    try:
        from modeling_mtrec.default_encoder import DEFAULT_ENCODER_HUB_ID, default_encoder_path

        default = default_encoder_path()
    except ImportError:  # the package or its offline encoder is not installed: the folder cannot be that one
        return None
    return DEFAULT_ENCODER_HUB_ID if os.path.realpath(value) == os.path.realpath(default) else None


class MTRecConfig(PreTrainedConfig):
    r"""
    Configuration of an [`MTRecModel`]: a BERT news encoder, an additive-attention user encoder, dot-product
    click scores, and two auxiliary heads on the BERT output (news category from [CLS], per-token BIO NER); a third,
    news sentiment from [CLS], where the corpus labels it (EB-NeRD; off by default: not in the paper).

    Args:
        encoder_config (`BertConfig` or `dict`, *optional*):
            Configuration of the BERT news encoder. Defaults to `bert-base-uncased`'s shape, the encoder of the
            paper. [`MTRecModel.from_pretrained_encoder`] fills it from a checkpoint.
        id2category (`dict[int, str]`, *optional*):
            Category vocabulary of `news.tsv` for the category task. `None` or empty disables the head.
        ner_labels (`list[str]`, *optional*, defaults to `["O", "B", "I"]`):
            Per-token tag set of the NER task.
        max_title_length (`int`, *optional*, defaults to 30):
            Title tokens fed to BERT, [CLS] and [SEP] included (paper: titles truncated to 30 tokens).
        max_history_length (`int`, *optional*, defaults to 50):
            Most recent clicked news kept per user (paper: as in NRMS).
        num_negatives (`int`, *optional*, defaults to 4):
            K, non-clicked news paired with each click in the main loss (paper: negative sampling ratio 4).
        user_attention_dim (`int`, *optional*, defaults to 200):
            Width of the additive attention's query space in the user encoder (NRMS's 200, which MTRec's user
            encoder follows).
        use_category_task (`bool`, *optional*, defaults to `True`):
            Whether to build and train the category head.
        use_ner_task (`bool`, *optional*, defaults to `True`):
            Whether to build and train the NER head.
        id2sentiment (`dict[int, str]`, *optional*):
            Sentiment vocabulary of the sentiment task (EB-NeRD's ``sentiment_label``: Negative / Neutral /
            Positive). Needed, with at least two labels, when `use_sentiment_task` is on.
        use_sentiment_task (`bool`, *optional*, defaults to `False`):
            Whether to build and train the sentiment head: a third auxiliary classification task on [CLS], whose
            loss joins the auxiliary gradient, λ(g_category + g_ner + g_sentiment), before the surgery. Not in the
            paper (its corpus, MIND, has no sentiment labels); the public MTRec reproductions on EB-NeRD train it.
        use_multi_field (`bool`, *optional*, defaults to `False`):
            MTRec's multi-field variant (paper, Sec. 4.4: multi-task learning combined with multi-field learning
            improves further): the news vector is r̃ = Σ_i w_i r_i over the title vector ([CLS]), a category
            embedding and the mean of the title's entity embeddings, w_i = softmax_i(q · tanh(W r_i)). Off: the
            paper's main model, r = [CLS].
        num_entity_buckets (`int`, *optional*, defaults to 50000):
            Rows of the multi-field entity embedding: entities (MIND's WikidataId, else their label) are hashed
            into this many buckets (`modeling_mtrec.models.mtrec.processing_mtrec.entity_field_ids`).
        head_dropout (`float`, *optional*, defaults to 0.1):
            Dropout on the BERT output before the auxiliary heads (BERT's own hidden dropout).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialiser of the non-BERT weights (BERT's value).
        length_buckets (`int`, *optional*, defaults to 1):
            Most groups of similar title length the news encoder runs on separately, each cut to its own longest
            title, so little compute goes to padding (SpeedyFeed, Xiao et al. KDD 2022, Sec. 4.3). 1 encodes the
            batch as one padded block, the paper's computation; any value gives the same news vectors up to float
            rounding. Not in the paper: a speed knob.
        freeze_encoder_layers (`int`, *optional*, defaults to 0):
            k: the embeddings and the first k BERT layers take no gradient and run without dropout, so their output
            for a title never changes and can be computed once (`modeling_mtrec.training.frozen_states`); a step
            then runs only the top layers. PLM-NR fine-tunes only BERT's top layers, Legommenders freezes and caches
            the lower ones: most of the cost of fine-tuning a PLM news encoder goes to layers that barely move. 0
            fine-tunes all of BERT, the paper's training. Not in the paper: a cost knob.
        encoder_name_or_path (`str`, *optional*):
            The Hub id of the checkpoint the news encoder was initialised from, for the model card's `base_model`.
            A local folder is recorded as its Hub id when known (the package's offline default encoder), else as
            `None`: a saved config never carries a path of the machine that trained it.
    """

    model_type = "mtrec"
    sub_configs_defaults = {"encoder_config": SubConfigSpec(config_class=BertConfig)}
    keys_to_ignore_at_inference = [
        "main_loss", "category_loss", "ner_loss", "sentiment_loss", "news_embeds", "user_embeds"
    ]

    encoder_config: dict | BertConfig | None = None
    id2category: dict[int, str] | dict[str, str] | None = None
    ner_labels: list[str] | None = None
    max_title_length: int = 30
    max_history_length: int = 50
    num_negatives: int = 4
    user_attention_dim: int = 200
    use_category_task: bool = True
    use_ner_task: bool = True
    id2sentiment: dict[int, str] | dict[str, str] | None = None
    use_sentiment_task: bool = False
    use_multi_field: bool = False
    num_entity_buckets: int = 50_000
    head_dropout: float = 0.1
    initializer_range: float = 0.02
    length_buckets: int = 1
    freeze_encoder_layers: int = 0
    encoder_name_or_path: str | None = None

    def __post_init__(self, **kwargs):
        self.encoder_name_or_path = encoder_hub_id(self.encoder_name_or_path)
        if self.ner_labels is None:
            self.ner_labels = list(DEFAULT_NER_LABELS)
        # JSON turns int keys into strings; the category ids are ints everywhere else.
        self.id2category = {int(k): v for k, v in (self.id2category or {}).items()}
        self.id2sentiment = {int(k): v for k, v in (self.id2sentiment or {}).items()}
        for name in ("max_title_length", "max_history_length", "num_negatives", "user_attention_dim", "length_buckets",
                     "num_entity_buckets"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if self.max_title_length < 3:
            raise ValueError(f"`max_title_length` must leave room for [CLS], [SEP] and a word, got {self.max_title_length}")
        if sorted(self.id2category) != list(range(len(self.id2category))):
            raise ValueError(f"`id2category` keys must be 0..{len(self.id2category) - 1}, got {sorted(self.id2category)}")
        if sorted(self.id2sentiment) != list(range(len(self.id2sentiment))):
            raise ValueError(
                f"`id2sentiment` keys must be 0..{len(self.id2sentiment) - 1}, got {sorted(self.id2sentiment)}"
            )
        if self.use_sentiment_task and len(self.id2sentiment) < 2:
            raise ValueError(
                f"`use_sentiment_task` needs `id2sentiment` with at least two labels, got {self.id2sentiment!r}"
            )
        if not isinstance(self.freeze_encoder_layers, int) or self.freeze_encoder_layers < 0:
            raise ValueError(f"`freeze_encoder_layers` must be an integer >= 0, got {self.freeze_encoder_layers!r}")
        if len(self.ner_labels) < 2:
            raise ValueError(f"`ner_labels` needs at least an outside and an entity tag, got {self.ner_labels!r}")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"`head_dropout` must be in [0, 1), got {self.head_dropout}")
        if not (isinstance(self.initializer_range, (int, float)) and 0.0 < self.initializer_range < float("inf")):
            raise ValueError(f"`initializer_range` must be a finite number > 0, got {self.initializer_range!r}")
        super().__post_init__(**kwargs)
        if self.max_title_length > self.encoder_config.max_position_embeddings:
            raise ValueError(
                f"`max_title_length`={self.max_title_length} exceeds the encoder's "
                f"max_position_embeddings={self.encoder_config.max_position_embeddings}"
            )
        if self.freeze_encoder_layers > self.encoder_config.num_hidden_layers:
            raise ValueError(
                f"`freeze_encoder_layers`={self.freeze_encoder_layers} exceeds the encoder's "
                f"num_hidden_layers={self.encoder_config.num_hidden_layers}"
            )

    def to_dict(self) -> dict:
        output = super().to_dict()
        # The encoder config's `_name_or_path` is the folder it was read from on the training machine: not saved.
        if isinstance(output.get("encoder_config"), dict):
            output["encoder_config"].pop("_name_or_path", None)
        return output

    @property
    def num_categories(self) -> int:
        return len(self.id2category)

    @property
    def category2id(self) -> dict[str, int]:
        return {name: idx for idx, name in self.id2category.items()}

    @property
    def num_sentiments(self) -> int:
        return len(self.id2sentiment)

    @property
    def sentiment2id(self) -> dict[str, int]:
        return {name: idx for idx, name in self.id2sentiment.items()}

    @property
    def hidden_size(self) -> int:
        return self.encoder_config.hidden_size


__all__ = ["MTRecConfig", "encoder_hub_id"]
