"""MTRec: Multi-Task Learning over BERT for News Recommendation.

Qiwei Bi, Jian Li, Lifeng Shang, Xin Jiang, Qun Liu, Hanfang Yang. Findings of ACL 2022, pp. 2663-2669. https://aclanthology.org/2022.findings-acl.209

News encoder: BERT over the title; the news vector r is the final hidden state at [CLS].
User encoder: additive attention over the user's clicked news, r_u = sum_i a_i r_i with
a_i = softmax_i(q . tanh(W r_i + b)). Click score: s_j = r_j . r_u.
Main loss: softmax over one clicked and K non-clicked news of the same impression.
Auxiliary tasks on the BERT output (paper: 3.3): news category from [CLS]; NER as per-token BIO tags; and, off by
default, news sentiment from [CLS] (`config.use_sentiment_task`).
L = L_main + L_category + L_ner (+ L_sentiment). The gradient surgery that combines them during training lives in
`modeling_mtrec.training.surgery` (applied by `MTRecTrainer`); this file only computes the losses.

NOTE: departures from / precisions of the paper.
- A user whose history is empty (or holds only news unknown to news.tsv) gets r_u = 0, so every candidate
  scores 0 and the ranking is uniform. The paper does not cover this case; a zero vector adds no parameters and
  makes "no evidence" explicit instead of inventing a learned default user.
- The main loss is written for any number of clicks per row: every clicked candidate is scored against all the
  row's non-clicked ones. With one click and K negatives (training) it is exactly the paper's main loss; on whole
  impressions (evaluation) it stays defined.
- Losses are computed in float32 even under autocast, so fp16/bf16 training does not lose the softmax tails.
- `config.freeze_encoder_layers` = k > 0 (not in the paper; PLM-NR, Legommenders) freezes the embeddings and the
  first k BERT layers and runs them without dropout even in training, so that their output is a fixed function of
  the title: states computed once (`news_hidden_states`) give the same step as running them.
- The sentiment task (`config.use_sentiment_task`, not in the paper, whose MIND has no sentiment labels) is a third
  auxiliary classification head on [CLS], as the category head, for corpora that label sentiment (EB-NeRD's
  `sentiment_label`, as the public MTRec reproductions on EB-NeRD train it); its loss is one more auxiliary loss.
- The multi-field variant (`config.use_multi_field`; the paper reports it in Sec. 4.4 without its details) pools the
  title vector, a category embedding and the mean entity embedding of the title by additive attention,
  r̃ = Σ_i w_i r_i, w_i = softmax_i(q · tanh(W r_i)), the user encoder's form. A news without a (known) category uses
  one shared "no category" row; a title without entities leaves the entity field out of the softmax. The auxiliary
  heads still read BERT's output (the paper's tasks are on the encoder), so the category field is not leaked to them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import BertModel, PreTrainedModel
from transformers import initialization as init
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.bert.modeling_bert import BertEmbeddings
from transformers.utils import ModelOutput, logging

from .configuration_mtrec import MTRecConfig

logger = logging.get_logger(__name__)

IGNORE_INDEX = -100  # Copied from modeling_mtrec.data.padding.IGNORE_INDEX (this file stands alone as remote code)


@dataclass
class MTRecOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*):
        L_main + L_category + L_ner (+ L_sentiment) over the losses whose labels were given (unweighted, as in the paper;
        the λ of the gradient surgery is a training argument, applied by `MTRecTrainer`).
    main_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Click loss, returned when `labels` is given.
    category_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Category cross-entropy averaged over the distinct news of the batch; `None` when the task is off or
        `category_labels` is absent.
    ner_loss (`torch.FloatTensor` of shape `()`, *optional*):
        BIO cross-entropy averaged over the labelled title tokens; `None` when the task is off or `ner_labels`
        is absent.
    sentiment_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Sentiment cross-entropy averaged over the distinct news of the batch with a sentiment label; `None` when the
        task is off or `sentiment_labels` is absent.
    logits (`torch.FloatTensor` of shape `(batch_size, num_candidates)`):
        Click scores s_j = r_j . r_u.
    news_embeds (`torch.FloatTensor` of shape `(num_news, hidden_size)`):
        [CLS] vectors of the batch's distinct news.
    user_embeds (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
        User vectors.
    """

    loss: torch.FloatTensor | None = None
    main_loss: torch.FloatTensor | None = None
    category_loss: torch.FloatTensor | None = None
    ner_loss: torch.FloatTensor | None = None
    sentiment_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    news_embeds: torch.FloatTensor | None = None
    user_embeds: torch.FloatTensor | None = None


class AdditiveAttention(nn.Module):
    """a_i = softmax_i(q . tanh(W x_i + b)); returns sum_i a_i x_i over the unmasked i (zeros if none)."""

    def __init__(self, hidden_size: int, attention_dim: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, attention_dim)
        self.query = nn.Parameter(torch.empty(attention_dim))

    def attention_weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """a_i, float32. (B, H, D), (B, H) bool -> (B, H); 0 on masked entries (all 0 for a row without any)."""
        scores = torch.tanh(self.proj(x)) @ self.query.to(x.dtype)  # (B, H, A) @ (A,) -> (B, H)
        scores = scores.float().masked_fill(~mask, torch.finfo(torch.float32).min)
        # Masked entries get exactly zero weight, so padding never changes r_u. A row with no valid entry would
        # get a uniform softmax over padding; multiplying by the mask turns that into r_u = 0 (see module NOTE).
        return torch.softmax(scores, dim=-1) * mask  # (B, H)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, H, D), mask: (B, H) bool
        weights = self.attention_weights(x, mask)  # (B, H)
        return torch.einsum("bh,bhd->bd", weights.to(x.dtype), x)  # (B, H) x (B, H, D) -> (B, D)


def click_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-log(exp(s+) / (exp(s+) + sum_k exp(s-_k))) averaged over the clicked candidates.

    logits: (B, C) scores; labels: (B, C) with 1 clicked, 0 not clicked, IGNORE_INDEX (-100) padding.
    """
    logits = logits.float()
    very_negative = torch.finfo(torch.float32).min
    # log sum_k exp(s-_k) per row; a finite floor instead of -inf keeps the backward pass NaN-free on rows
    # without negatives (their positives then cost log(1) = 0).
    neg_lse = torch.logsumexp(logits.masked_fill(labels != 0, very_negative), dim=-1, keepdim=True)  # (B, 1)
    per_candidate = torch.logaddexp(logits, neg_lse) - logits  # (B, C): -log softmax of s_j against negatives
    positives = labels == 1
    return (per_candidate * positives).sum() / positives.sum().clamp(min=1)


def length_groups(sorted_lengths: list[int], max_groups: int) -> list[tuple[int, int]]:
    """Cuts ascending lengths into at most `max_groups` runs [start, end) with the fewest padded tokens.

    A run padded to its longest item costs (end - start) * sorted_lengths[end - 1] tokens; dynamic programming
    over the positions where the length changes (at most the number of distinct lengths, ~30 for titles) finds
    the cheapest cuts exactly.

    >>> length_groups([3, 3, 4, 9, 9, 10], 2)
    [(0, 3), (3, 6)]
    """
    n = len(sorted_lengths)
    if n == 0:
        return []
    ends = [i for i in range(1, n) if sorted_lengths[i] != sorted_lengths[i - 1]] + [n]  # useful run ends
    # best[k][j]: fewest tokens covering items [0, ends[j]) with k + 1 runs; cut[k][j]: where its last run starts.
    inf = float("inf")
    best = [[inf] * len(ends) for _ in range(max_groups)]
    cut = [[0] * len(ends) for _ in range(max_groups)]
    for j, end in enumerate(ends):
        best[0][j] = end * sorted_lengths[end - 1]
    for k in range(1, max_groups):
        for j, end in enumerate(ends):
            best[k][j], cut[k][j] = best[k - 1][j], cut[k - 1][j]
            for i in range(j):  # last run covers [ends[i], end)
                cost = best[k - 1][i] + (end - ends[i]) * sorted_lengths[end - 1]
                if cost < best[k][j]:
                    best[k][j], cut[k][j] = cost, ends[i]
    runs, k, end = [], max_groups - 1, n
    while end > 0:
        start = cut[k][ends.index(end)] if k > 0 else 0
        runs.append((start, end))
        end, k = start, k - 1
    return runs[::-1]


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over labels != IGNORE_INDEX; 0 (still in the graph) when nothing is labelled."""
    logits = logits.float().reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1)
    total = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    # Dividing by a clamped count instead of using reduction="mean" avoids NaN on batches without labels and a
    # host sync on the count.
    return total / (labels != IGNORE_INDEX).sum().clamp(min=1)


def _unreadable_weights(name_or_path) -> str:
    """The first ``*.safetensors`` file of a local folder whose header cannot be read, else `name_or_path` itself."""
    if os.path.isdir(name_or_path):
        for name in sorted(os.listdir(name_or_path)):
            path = os.path.join(name_or_path, name)
            if name.endswith(".safetensors"):
                try:
                    with safe_open(path, framework="pt"):
                        pass
                except SafetensorError:
                    return path
    return os.fspath(name_or_path)


def _init_bert_buffers(module: BertEmbeddings) -> None:
    """Sets the buffers `BertPreTrainedModel._init_weights` sets (our base class is not BERT's)."""
    init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
    init.zeros_(module.token_type_ids)


class MTRecPreTrainedModel(PreTrainedModel):
    config: MTRecConfig
    config_class = MTRecConfig
    base_model_prefix = "mtrec"
    main_input_name = "news_input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _no_split_modules = ["BertEmbeddings", "BertLayer"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, naming the weights file it cannot read: safetensors' own message for a
        truncated file ("incomplete metadata, file not fully covered") names none."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except SafetensorError as error:
            raise OSError(
                f"{_unreadable_weights(pretrained_model_name_or_path)}: cannot read the weights ({error}); the file is "
                "truncated (an interrupted copy or download?) or not a safetensors file"
            ) from error

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, AdditiveAttention):
            init.normal_(module.query, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, BertEmbeddings):
            _init_bert_buffers(module)


class MTRecModel(MTRecPreTrainedModel):
    """MTRec news recommender with its category and NER heads (and a sentiment head when configured); owns its losses
    (see `forward`)."""

    def __init__(self, config: MTRecConfig):
        super().__init__(config)
        hidden = config.hidden_size
        # The [CLS] hidden state is the news vector, so BERT's pooler would be dead weight.
        self.news_encoder = BertModel(config.encoder_config, add_pooling_layer=False)
        self.user_encoder = AdditiveAttention(hidden, config.user_attention_dim)
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.category_head = (
            nn.Linear(hidden, config.num_categories)
            if config.use_category_task and config.num_categories > 0
            else None
        )
        self.ner_head = nn.Linear(hidden, len(config.ner_labels)) if config.use_ner_task else None
        self.sentiment_head = nn.Linear(hidden, config.num_sentiments) if config.use_sentiment_task else None
        if config.use_multi_field:
            # Row num_categories: no or unknown category. Entity row 0: padding (hashed ids are 1..num_entity_buckets).
            self.category_embeddings = nn.Embedding(config.num_categories + 1, hidden)
            self.entity_embeddings = nn.Embedding(config.num_entity_buckets + 1, hidden, padding_idx=0)
            self.field_attention = AdditiveAttention(hidden, config.user_attention_dim)
        self.post_init()
        for module in self._frozen_modules():
            module.requires_grad_(False).eval()  # see `train`

    def _frozen_modules(self) -> list[nn.Module]:
        """The embeddings and the first `config.freeze_encoder_layers` BERT layers (none when 0)."""
        k = self.config.freeze_encoder_layers
        return [self.news_encoder.embeddings, *self.news_encoder.encoder.layer[:k]] if k else []

    def train(self, mode: bool = True) -> MTRecModel:
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()  # no dropout in the frozen part (module NOTE): its states are the cached ones
        return self

    @classmethod
    def from_pretrained_encoder(
        cls, encoder_name_or_path: str, *, encoder_kwargs: dict | None = None, **config_kwargs
    ) -> MTRecModel:
        """Builds MTRec around a pretrained BERT: a Hub id (`bert-base-uncased`) or a local folder.

        The encoder's weights are loaded into `news_encoder`; the user encoder and heads are freshly initialised.
        `config_kwargs` go to [`MTRecConfig`] (e.g. `id2category`, `max_title_length`).
        """
        encoder = BertModel.from_pretrained(
            encoder_name_or_path, add_pooling_layer=False, dtype=torch.float32, **(encoder_kwargs or {})
        )
        config_kwargs.setdefault("encoder_name_or_path", str(encoder_name_or_path))  # a local folder: see MTRecConfig
        encoder_config = encoder.config.to_dict()
        encoder_config.pop("_name_or_path", None)  # where it was read from, on this machine
        config = MTRecConfig(encoder_config=encoder_config, **config_kwargs)
        model = cls(config)
        model.news_encoder.load_state_dict(encoder.state_dict())
        return model

    def get_input_embeddings(self) -> nn.Module:
        return self.news_encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.news_encoder.set_input_embeddings(value)

    def _run_layers(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None, layers) -> torch.Tensor:
        """BERT `layers` over hidden states, as `BertModel.forward` runs them. (N, L, D) -> (N, L, D)."""
        mask = create_bidirectional_mask(
            config=self.news_encoder.config, inputs_embeds=hidden, attention_mask=attention_mask
        )
        for layer in layers:
            hidden = layer(hidden, mask)
        return hidden

    @torch.no_grad()
    def frozen_hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """States after the frozen part (embeddings and `config.freeze_encoder_layers` layers), without gradient:
        what `forward` takes as `news_hidden_states`. (N, L) -> (N, L, D)."""
        hidden = self.news_encoder.embeddings(input_ids=input_ids)  # (N, L, D)
        return self._run_layers(hidden, attention_mask, self._frozen_modules()[1:])

    def _encode_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, frozen_states: torch.Tensor | None = None
    ) -> torch.Tensor:
        """BERT's final states. (N, L) -> (N, L, D); from `frozen_states` (N, L, D) only the layers above the frozen
        ones run.

        With `config.length_buckets` = k > 1 the titles are sorted by length and encoded in at most k groups, each
        cut to its own longest title (`length_groups` picks the cuts that leave the fewest padded tokens), so the
        encoder stops paying for most of the padding. Real-token states equal the padded path's up to float
        rounding (attention never looks at masked keys); states at padded positions are 0 instead of BERT's
        outputs there, which nothing reads (NER labels are -100 on padding).
        """
        if frozen_states is None:
            inputs, encode = input_ids, lambda x, mask: self.news_encoder(input_ids=x, attention_mask=mask).last_hidden_state
        else:
            if not self.config.freeze_encoder_layers:
                raise ValueError("`news_hidden_states` needs a model with `config.freeze_encoder_layers` > 0")
            top = self.news_encoder.encoder.layer[self.config.freeze_encoder_layers :]
            inputs, encode = frozen_states, lambda x, mask: self._run_layers(x, mask, top)
        buckets = self.config.length_buckets
        if buckets <= 1 or attention_mask is None or inputs.shape[0] < 2:
            return encode(inputs, attention_mask)
        width = inputs.shape[1]
        lengths = attention_mask.sum(dim=1)  # (N,)
        positions = torch.arange(width, device=attention_mask.device)
        if not torch.equal(attention_mask.bool(), positions[None, :] < lengths[:, None]):
            # Cutting columns is only right for right-padded titles (real tokens first), as the collators make.
            return encode(inputs, attention_mask)
        order = torch.argsort(lengths, stable=True)  # (N,) shortest first
        sorted_lengths = lengths[order].tolist()
        pieces = []
        for start, end in length_groups(sorted_lengths, buckets):
            rows, longest = order[start:end], max(sorted_lengths[end - 1], 1)
            hidden = encode(inputs[rows, :longest], attention_mask[rows, :longest])  # (n_g, l_g, D)
            pieces.append(F.pad(hidden, (0, 0, 0, width - longest)))  # (n_g, L, D)
        return torch.cat(pieces)[torch.argsort(order)]  # (N, L, D), back in the batch's row order

    # --------------------------------------------------------------- the scoring interface every model offers

    @property
    def vector_size(self) -> int:
        """D, the width of news and user vectors."""
        return self.config.hidden_size

    def get_item_encoder(self) -> nn.Module:
        """Everything a news vector depends on (a news-vector cache fingerprints it)."""
        return self.news_encoder

    def encode_items(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        category_ids: torch.Tensor | None = None,
        entity_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """News vectors r: BERT's final [CLS] state. (N, L) -> (N, D). With `config.use_multi_field`, r̃: the [CLS]
        state pooled with the category (N,) and entity (N, E) embeddings (`pool_fields`)."""
        vectors = self._encode_tokens(input_ids, attention_mask)[:, 0]  # (N, D)
        return self.pool_fields(vectors, category_ids, entity_ids) if self.config.use_multi_field else vectors

    def pool_fields(
        self, title_vectors: torch.Tensor, category_ids: torch.Tensor | None, entity_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """r̃ = Σ_i w_i r_i over the fields (title, category, entities), w_i = softmax_i(q · tanh(W r_i)).

        title_vectors (N, D); category_ids (N,): category id, negative (-100) for none or unknown; entity_ids (N, E):
        hashed entity ids, 0 on padding. -> (N, D)
        """
        if category_ids is None or entity_ids is None:
            raise ValueError(
                "a multi-field MTRec (config.use_multi_field) needs the news' category_ids and entity_ids "
                "(MTRecCollator(..., entity_buckets=config.num_entity_buckets) supplies them)"
            )
        unknown = self.config.num_categories
        category_ids = torch.where(category_ids < 0, torch.full_like(category_ids, unknown), category_ids)
        category = self.category_embeddings(category_ids).to(title_vectors.dtype)  # (N, D)
        entity_mask = entity_ids > 0  # (N, E)
        entities = self.entity_embeddings(entity_ids).to(title_vectors.dtype) * entity_mask[..., None]  # (N, E, D)
        entity = entities.sum(1) / entity_mask.sum(1, keepdim=True).clamp(min=1).to(title_vectors.dtype)  # (N, D)
        fields = torch.stack([title_vectors, category, entity], dim=1)  # (N, 3, D)
        present = torch.ones(fields.shape[:2], dtype=torch.bool, device=fields.device)  # (N, 3)
        present[:, 2] = entity_mask.any(1)  # a title without entities: that field takes no weight
        return self.field_attention(fields, present)  # (N, 3, D) -> (N, D)

    def encode_users(self, history_embeds: torch.Tensor, history_mask: torch.Tensor | None = None) -> torch.Tensor:
        """User vectors r_u from clicked-news vectors. (B, H, D), (B, H) -> (B, D); r_u = 0 for an empty history.

        Only the most recent `config.max_history_length` clicks of each row count (the last unmasked entries):
        the model holds the one history rule, so a loader that kept more clicks, training, evaluation, the
        prediction file and the recommender all see the same users.
        """
        return self.user_encoder(history_embeds, self._recent_history_mask(history_embeds, history_mask))

    def user_attention_weights(
        self, history_embeds: torch.Tensor, history_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The user encoder's additive-attention weight a_i of each clicked news, i.e. how much each click counts in
        r_u (which past clicks drove a ranking). (B, H, D), (B, H) -> (B, H) float32; 0 on padding and on clicks
        older than the most recent `config.max_history_length`. Reads the weights `encode_users` uses; changes nothing.
        """
        return self.user_encoder.attention_weights(
            history_embeds, self._recent_history_mask(history_embeds, history_mask)
        )

    def _recent_history_mask(self, history_embeds: torch.Tensor, history_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, H) bool: the real entries among each row's most recent `config.max_history_length`."""
        if history_mask is None:
            history_mask = torch.ones(history_embeds.shape[:2], dtype=torch.bool, device=history_embeds.device)
        history_mask = history_mask.bool()
        if history_mask.shape[1] > self.config.max_history_length:
            # Entries at or after each position; keep a click while at most max_history_length are that recent.
            from_end = history_mask.flip(-1).cumsum(-1).flip(-1)  # (B, H)
            history_mask = history_mask & (from_end <= self.config.max_history_length)
        return history_mask

    @staticmethod
    def score(user_embeds: torch.Tensor, item_embeds: torch.Tensor) -> torch.Tensor:
        """s_j = r_j . r_u. (B, D) with each user's candidates (B, C, D), or candidates shared by all (C, D) -> (B, C)."""
        if item_embeds.dim() == 2:
            return user_embeds @ item_embeds.T  # (B, D) @ (D, C) -> (B, C)
        return torch.einsum("bcd,bd->bc", item_embeds, user_embeds)  # (B, C, D) . (B, D) -> (B, C)

    def forward(
        self,
        news_input_ids: torch.LongTensor,
        news_attention_mask: torch.Tensor | None = None,
        history_index: torch.LongTensor | None = None,
        history_mask: torch.Tensor | None = None,
        candidate_index: torch.LongTensor | None = None,
        candidate_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        category_labels: torch.LongTensor | None = None,
        ner_labels: torch.LongTensor | None = None,
        sentiment_labels: torch.LongTensor | None = None,
        news_category_ids: torch.LongTensor | None = None,
        news_entity_ids: torch.LongTensor | None = None,
        cached_news_embeds: torch.Tensor | None = None,
        cached_news_mask: torch.Tensor | None = None,
        news_hidden_states: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> MTRecOutput | tuple:
        r"""
        The batch carries each distinct news once; users and candidates point into it, so BERT runs once per news.

        news_input_ids (`torch.LongTensor` of shape `(num_news, title_length)`): title tokens of the distinct news.
        news_attention_mask (`torch.Tensor` of shape `(num_news, title_length)`): 1 on real tokens.
        history_index (`torch.LongTensor` of shape `(batch_size, history_length)`): rows of `news_input_ids` clicked
            by each user, oldest first.
        history_mask (`torch.Tensor` of shape `(batch_size, history_length)`): True on real history entries.
        candidate_index (`torch.LongTensor` of shape `(batch_size, num_candidates)`): rows of the candidates.
        candidate_mask (`torch.Tensor` of shape `(batch_size, num_candidates)`): True on real candidates.
        labels (`torch.LongTensor` of shape `(batch_size, num_candidates)`): 1 clicked, 0 not, -100 padding.
        category_labels (`torch.LongTensor` of shape `(num_news,)`): category id per news, -100 to ignore.
        ner_labels (`torch.LongTensor` of shape `(num_news, title_length)`): BIO tag id per token, -100 to ignore.
        sentiment_labels (`torch.LongTensor` of shape `(num_news,)`, *optional*): sentiment id per news, -100 to
            ignore (read only with `config.use_sentiment_task`).
        news_category_ids (`torch.LongTensor` of shape `(num_news,)`, *optional*): category id per news, negative for
            none (the category field of `config.use_multi_field`; needed then).
        news_entity_ids (`torch.LongTensor` of shape `(num_news, num_entities)`, *optional*): hashed entity ids of
            each title, 0 on padding (the entity field of `config.use_multi_field`; needed then).
        cached_news_embeds (`torch.Tensor` of shape `(num_news, hidden_size)`, *optional*): news vectors computed
            earlier (the history-vector cache of `MTRecTrainer`, `history_cache_steps`); read only where
            `cached_news_mask` is True.
        cached_news_mask (`torch.BoolTensor` of shape `(num_news,)`, *optional*): news taken from
            `cached_news_embeds` as constants instead of being encoded. They get no gradient and take no part in
            the auxiliary losses, which are averaged over the freshly encoded news only.
        news_hidden_states (`torch.Tensor` of shape `(num_news, title_length, hidden_size)`, *optional*): each news'
            states after the frozen layers (`frozen_hidden_states`, cached by `modeling_mtrec.training.frozen_states`);
            only the layers above `config.freeze_encoder_layers` then run.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if cached_news_mask is not None and bool(cached_news_mask.any()):
            fresh = (~cached_news_mask.bool()).nonzero(as_tuple=True)[0]  # (F,) rows BERT encodes
            hidden = self._encode_tokens(
                news_input_ids[fresh], None if news_attention_mask is None else news_attention_mask[fresh],
                None if news_hidden_states is None else news_hidden_states[fresh],
            )  # (F, L, D)
            fresh_embeds = hidden[:, 0]  # (F, D)
            fresh_vectors = fresh_embeds
            if self.config.use_multi_field:
                fresh_vectors = self.pool_fields(
                    fresh_embeds, None if news_category_ids is None else news_category_ids[fresh],
                    None if news_entity_ids is None else news_entity_ids[fresh],
                )
            news_embeds = cached_news_embeds.detach().to(hidden.dtype).index_copy(0, fresh, fresh_vectors)  # (N, D)
            category_labels = None if category_labels is None else category_labels[fresh]
            ner_labels = None if ner_labels is None else ner_labels[fresh]
            sentiment_labels = None if sentiment_labels is None else sentiment_labels[fresh]
        else:
            hidden = self._encode_tokens(news_input_ids, news_attention_mask, news_hidden_states)  # (N, L, D)
            news_embeds = fresh_embeds = hidden[:, 0]  # (N, D): [CLS]
            if self.config.use_multi_field:  # r̃ for users and scores; the auxiliary heads keep reading BERT
                news_embeds = self.pool_fields(fresh_embeds, news_category_ids, news_entity_ids)

        logits = user_embeds = main_loss = category_loss = ner_loss = sentiment_loss = None
        if history_index is not None and candidate_index is not None:
            history_embeds = news_embeds[history_index]  # (B, H, D)
            if history_mask is None:
                history_mask = torch.ones_like(history_index, dtype=torch.bool)
            user_embeds = self.encode_users(history_embeds, history_mask)  # (B, D)
            logits = self.score(user_embeds, news_embeds[candidate_index])  # (B, C, D) . (B, D) -> (B, C)
            if labels is not None:
                if candidate_mask is not None:
                    labels = labels.masked_fill(~candidate_mask.bool(), IGNORE_INDEX)
                main_loss = click_loss(logits, labels)

        if self.category_head is not None and category_labels is not None:
            category_logits = self.category_head(self.head_dropout(fresh_embeds))  # (F, num_categories)
            category_loss = masked_cross_entropy(category_logits, category_labels)
        if self.ner_head is not None and ner_labels is not None:
            tag_logits = self.ner_head(self.head_dropout(hidden))  # (F, L, num_tags)
            ner_loss = masked_cross_entropy(tag_logits, ner_labels)
        if self.sentiment_head is not None and sentiment_labels is not None:
            sentiment_logits = self.sentiment_head(self.head_dropout(fresh_embeds))  # (F, num_sentiments)
            sentiment_loss = masked_cross_entropy(sentiment_logits, sentiment_labels)

        present = [part for part in (main_loss, category_loss, ner_loss, sentiment_loss) if part is not None]
        loss = torch.stack(present).sum() if present else None

        output = MTRecOutput(
            loss=loss,
            main_loss=main_loss,
            category_loss=category_loss,
            ner_loss=ner_loss,
            sentiment_loss=sentiment_loss,
            logits=logits,
            news_embeds=news_embeds,
            user_embeds=user_embeds,
        )
        return output if return_dict else output.to_tuple()


__all__ = ["MTRecPreTrainedModel", "MTRecModel", "MTRecOutput"]
