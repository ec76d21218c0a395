"""Two-tower retriever with a self-supervised item tower and logQ-corrected in-batch softmax.

Xinyang Yi, Ji Yang, Lichan Hong, Derek Zhiyuan Cheng, Lukasz Heldt, Aditee Kumthekar, Zhe Zhao, Li Wei, Ed Chi.
"Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations". RecSys 2019.
Tiansheng Yao, Xinyang Yi, Derek Zhiyuan Cheng, Felix Yu, Ting Chen, Aditya Menon, Lichan Hong, Ed H. Chi,
Steve Tjoa, Jieqi Kang, Evan Ettinger. "Self-supervised Learning for Large-scale Item Recommendations". CIKM 2021.

Item tower: embeddings of the hashed item id, category, subcategory, the bag of title entities (WikidataIds) and the
bag of title words (mean-pooled), optionally a projected frozen text vector of the title; concatenated -> ReLU MLP
-> L2 norm. User tower: hashed user-id embedding and the mean of the item-tower vectors of the user's clicks ->
ReLU MLP -> L2 norm. Score s(u, v) = cos(u, v) / τ (Yi et al. Sec. 3).

Main loss (Yi et al. Sec. 3, Eq. 3): in-batch softmax over the batch's clicked items, each logit shifted by
-log p_j, p_j the probability that item j is in a batch: from the streaming frequency estimator (Sec. 4,
`StreamingFrequencyEstimator`), from a static frequency table (`item_log_q` in the batch), or off.
Self-supervised loss (Yao et al. Sec. 3.1): a separate batch of items drawn uniformly from the corpus, two augmented
views each, L_self = -1/N Σ_i log(exp(cos(z_i, z'_i)/τ) / Σ_j exp(cos(z_i, z'_j)/τ)); the item tower is shared
with the main task (Sec. 3.3). L = L_main + α L_self.

NOTE: departures from / precisions of the papers.
- In-batch negatives are the batch's *distinct* clicked items: a news clicked by two users of the batch is one
  column, so a positive never competes with a copy of itself (Yi et al. do not discuss duplicates; counting one
  item twice as a negative would also double its weight in the partition function, which the logQ correction
  does not undo). The estimator likewise updates once per distinct item per step.
- The estimator's step t is supplied by the caller (`frequency_step`); `TwoTowerTrainer` passes the number of
  micro-batches seen, global_step * gradient_accumulation_steps + micro-batch + 1, because the in-batch softmax's
  negatives come from one micro-batch, so p_j must be the probability of appearing in one. With no
  gradient accumulation this is the global step + 1. Without a supplied step the estimator counts forwards itself.
  The estimator is updated in training mode only; its state (A, B, hash parameters, last step) are buffers, saved
  with checkpoints and `save_pretrained`.
- Yi et al. initialise A and B to 0 and apply the moving average from B = 0, so B stays below its target for the
  first ~1/α occurrences of every item (with α = 0.01 and a run of a few hundred steps, p̂ stays clipped at 1 and
  the correction does nothing: we measured exactly that). Here an item's first sighting (A = 0) sets B to its first
  interval t - 0, a moving average started at its first sample; later sightings follow Alg. 2 exactly. p̂ = 1/B is
  clipped to at most 1.
- A masked feature and an absent one (a title without entities, a bag emptied by dropout) both get the feature's
  learned default embedding: both mean "no information about this feature".
- Yao et al. combine one masking scheme with dropout; when several masking schemes are configured here, each item
  draws one of them uniformly, so "all combined" mixes them rather than masking (nearly) every feature.
- "correlated" masks the seed and its top-MI features in view 1 and the complementary features in view 2, so the
  two views see disjoint feature groups as with "complementary" (Yao et al. Sec. 3.2).
- Losses are computed in float32 even under autocast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_two_tower import MULTI_VALUED_FEATURES, TwoTowerConfig

logger = logging.get_logger(__name__)

# Mersenne prime 2^31 - 1 of the universal hash (a k + b) mod P mod H: with a, b, k < P the product fits in int64.
_HASH_PRIME = (1 << 31) - 1
# Item-feature batch keys, in ITEM_FEATURES order (+ text); the SSL batch uses the same names prefixed "ssl_".
FEATURE_KEYS = {
    "item_id": "item_key",
    "category": "category_key",
    "subcategory": "subcategory_key",
    "entities": "entity_keys",
    "words": "word_keys",
    "text": "text_embeds",
}


@dataclass
class TwoTowerOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*):
        L_main + ssl_weight * L_self over the losses that could be computed.
    main_loss (`torch.FloatTensor` of shape `()`, *optional*):
        logQ-corrected in-batch softmax loss; needs `user_key`, `history_index` and `positive_index`.
    ssl_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Contrastive loss of the two views of the SSL items; needs the `ssl_*` features and a positive `ssl_weight`.
    logits (`torch.FloatTensor` of shape `(batch_size, num_columns)`):
        cos(u_i, v_j) / τ - log p_j over the batch's distinct clicked items (columns sorted by item row).
    labels (`torch.LongTensor` of shape `(batch_size,)`):
        Column of each user's clicked item in `logits`.
    log_q (`torch.FloatTensor` of shape `(num_columns,)`):
        log p_j subtracted from each column (zeros when `logq_mode="off"`).
    user_embeds (`torch.FloatTensor` of shape `(batch_size, output_dim)`): L2-normalised user vectors.
    item_embeds (`torch.FloatTensor` of shape `(num_items, output_dim)`): L2-normalised vectors of the batch items.
    ssl_logits (`torch.FloatTensor` of shape `(num_ssl_items, num_ssl_items)`):
        cos(z_i, z'_j) / τ_ssl; the positives are on the diagonal.
    """

    loss: torch.FloatTensor | None = None
    main_loss: torch.FloatTensor | None = None
    ssl_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    labels: torch.LongTensor | None = None
    log_q: torch.FloatTensor | None = None
    user_embeds: torch.FloatTensor | None = None
    item_embeds: torch.FloatTensor | None = None
    ssl_logits: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------------------------
# Streaming frequency estimation (Yi et al. Sec. 4)
# ----------------------------------------------------------------------------------------------------------------


class StreamingFrequencyEstimator(nn.Module):
    """Estimates each item's probability of appearing in a batch from the stream of batches (Yi et al. Alg. 2-3).

    For hash function i and each distinct item y of the batch at step t:
        B_i[h_i(y)] <- (1 - α) B_i[h_i(y)] + α (t - A_i[h_i(y)]);   A_i[h_i(y)] <- t
    except on a bucket's first sighting (A = 0), where B <- t (module NOTE).
    B estimates the number of steps between two occurrences of y, so p(y) = 1 / max_i B_i[h_i(y)] (a collision
    only shortens an interval, so the largest B is the least contaminated; Alg. 3).
    """

    def __init__(self, num_buckets: int, num_hashes: int, learning_rate: float, seed: int):
        super().__init__()
        self.num_buckets, self.num_hashes, self.learning_rate, self.seed = num_buckets, num_hashes, learning_rate, seed
        self.register_buffer("hash_a", torch.empty(num_hashes, dtype=torch.long))
        self.register_buffer("hash_b", torch.empty(num_hashes, dtype=torch.long))
        self.register_buffer("last_seen", torch.zeros(num_hashes, num_buckets, dtype=torch.long))  # A
        self.register_buffer("interval", torch.zeros(num_hashes, num_buckets, dtype=torch.float32))  # B
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # last t used
        self.reset_parameters()

    def hash_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        a = torch.randint(1, _HASH_PRIME, (self.num_hashes,), generator=g)
        b = torch.randint(0, _HASH_PRIME, (self.num_hashes,), generator=g)
        return a, b

    def reset_parameters(self) -> None:
        a, b = self.hash_params()
        init.copy_(self.hash_a, a)
        init.copy_(self.hash_b, b)
        init.zeros_(self.last_seen)
        init.zeros_(self.interval)
        init.zeros_(self.step)

    def buckets(self, keys: torch.Tensor) -> torch.Tensor:
        """h_i(y) for every hash function. (N,) int64 keys -> (m, N)."""
        k = keys.remainder(_HASH_PRIME)  # (N,) in [0, P)
        return (self.hash_a[:, None] * k[None] + self.hash_b[:, None]).remainder(_HASH_PRIME).remainder(self.num_buckets)

    @torch.no_grad()
    def update(self, keys: torch.Tensor, step: int | torch.Tensor | None = None) -> None:
        """One step of Alg. 2 on the distinct `keys` (N,) seen at step t (default: the last step + 1)."""
        t = self.step + 1 if step is None else torch.as_tensor(step, dtype=torch.long, device=self.step.device)
        if bool(t < 1):
            raise ValueError(f"frequency estimator steps start at 1 (A = 0 marks an unseen bucket), got t={int(t)}")
        if bool(t <= self.step) and bool(self.step > 0):
            raise ValueError(f"frequency estimator steps must increase: got t={int(t)} after t={int(self.step)}")
        keys = torch.unique(keys)
        rows = torch.arange(self.num_hashes, device=keys.device)[:, None]  # (m, 1)
        cols = self.buckets(keys)  # (m, N)
        # Two keys colliding in one bucket read the same old A and B and write the same new values: one update.
        last = self.last_seen[rows, cols]  # (m, N)
        gap = (t - last).float()
        # First sighting (A = 0): the first interval t - 0 is the initial estimate (see module NOTE).
        rate = torch.where(last == 0, torch.ones_like(gap), torch.full_like(gap, self.learning_rate))
        self.interval[rows, cols] = (1 - rate) * self.interval[rows, cols] + rate * gap
        self.last_seen[rows, cols] = t
        self.step.copy_(t)

    def log_probability(self, keys: torch.Tensor) -> torch.Tensor:
        """log p̂(y) = -log max_i B_i[h_i(y)], p̂ clipped to at most 1. (N,) -> (N,)."""
        rows = torch.arange(self.num_hashes, device=keys.device)[:, None]
        interval = self.interval[rows, self.buckets(keys)].amax(dim=0)  # (m, N) -> (N,)
        return -torch.log(interval.clamp(min=1.0))


# ----------------------------------------------------------------------------------------------------------------
# Augmentations (Yao et al. Sec. 3.2). Masks are (N, F) bool, True = feature masked in that view.
# ----------------------------------------------------------------------------------------------------------------


def random_feature_masks(
    num_items: int, num_features: int, rate: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each feature masked independently with probability `rate`, independently in each view."""
    draws = torch.rand(2, num_items, num_features, generator=generator)
    return draws[0] < rate, draws[1] < rate


def complementary_masks(
    num_items: int, num_features: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features split at random into two disjoint groups covering all features; view 1 masks one, view 2 the other.

    The groups have floor(F/2) and ceil(F/2) features; which view masks the bigger one is drawn too.
    """
    order = torch.rand(num_items, num_features, generator=generator).argsort(dim=1)  # random permutation per item
    half = num_features // 2 + (torch.rand(num_items, 1, generator=generator) < 0.5).long() * (num_features % 2)
    first = torch.zeros(num_items, num_features, dtype=torch.bool)
    first.scatter_(1, order, torch.arange(num_features).expand(num_items, -1) < half)  # (N, F)
    return first, ~first


def correlated_feature_masks(
    num_items: int, mutual_information: torch.Tensor, rate: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Yao et al.'s correlated feature masking (CFM).

    A seed feature is drawn uniformly per item; view 1 masks it together with its round(F * rate) - 1 features of
    highest mutual information with it; view 2 masks the other features.
    """
    num_features = mutual_information.shape[0]
    size = max(1, min(num_features - 1, round(num_features * rate)))
    seeds = torch.randint(0, num_features, (num_items,), generator=generator)  # (N,)
    affinity = mutual_information.float()[seeds].clone()  # (N, F)
    affinity[torch.arange(num_items), seeds] = float("inf")  # the seed always comes first
    # Ties between equal-MI features are broken by a random jitter rather than by feature order.
    jitter = torch.rand(num_items, num_features, generator=generator) * 1e-6
    chosen = (affinity + jitter).topk(size, dim=1).indices  # (N, size)
    first = torch.zeros(num_items, num_features, dtype=torch.bool)
    first.scatter_(1, chosen, True)
    return first, ~first


def dropout_multi_valued(keys: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each value of a multi-valued feature (N, L) dropped (set to the padding key -1) with probability `rate`."""
    drop = torch.rand(keys.shape, generator=generator) < rate
    return keys.masked_fill(drop.to(keys.device), -1)


# ----------------------------------------------------------------------------------------------------------------
# Towers
# ----------------------------------------------------------------------------------------------------------------


def _mlp(in_dim: int, hidden_sizes: list[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class ItemTower(nn.Module):
    """Item features -> L2-normalised item vectors. Features are given as int64 keys (hashed here into buckets)."""

    def __init__(self, config: TwoTowerConfig):
        super().__init__()
        d = config.embedding_dim
        self.feature_names = config.feature_names
        self.item_id = nn.Embedding(config.item_id_buckets, d)
        self.category = nn.Embedding(config.category_buckets, d)
        self.subcategory = nn.Embedding(config.category_buckets, d)
        self.entities = nn.Embedding(config.entity_buckets, d)
        self.words = nn.Embedding(config.word_buckets, d)
        self.text = nn.Linear(config.text_embed_dim, d) if config.text_embed_dim > 0 else None
        # One learned default per feature: what a masked (or absent) feature contributes.
        self.default_embeddings = nn.Parameter(torch.empty(config.num_features, d))
        self.mlp = _mlp(config.num_features * d, config.tower_hidden_sizes, config.output_dim)

    @staticmethod
    def _bag(table: nn.Embedding, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean embedding of the valid (>= 0) keys and whether there was any. (N, L) -> (N, D), (N,)."""
        valid = keys >= 0
        embeds = table(keys.clamp(min=0).remainder(table.num_embeddings)) * valid[..., None]  # (N, L, D)
        count = valid.sum(1)  # (N,)
        return embeds.sum(1) / count.clamp(min=1)[:, None], count > 0

    def forward(self, features: dict[str, torch.Tensor], feature_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`features` keyed as `FEATURE_KEYS` values; `feature_mask` (N, F) True = masked. -> (N, output_dim)."""
        item_key = features["item_key"]
        n = item_key.shape[0]
        present = torch.ones(n, dtype=torch.bool, device=item_key.device)
        parts, has = [], []
        for name in ("item_id", "category", "subcategory"):
            table = getattr(self, name)
            parts.append(table(features[FEATURE_KEYS[name]].remainder(table.num_embeddings)))  # (N, D)
            has.append(present)
        for name in MULTI_VALUED_FEATURES:
            embed, nonempty = self._bag(getattr(self, name), features[FEATURE_KEYS[name]])
            parts.append(embed)
            has.append(nonempty)
        if self.text is not None:
            text = features.get("text_embeds")
            if text is None:
                raise ValueError("this model has a text feature (text_embed_dim > 0): pass `text_embeds`")
            parts.append(self.text(text.to(self.text.weight.dtype)))
            has.append(present)
        stacked = torch.stack(parts, dim=1)  # (N, F, D)
        use_default = ~torch.stack(has, dim=1)  # (N, F)
        if feature_mask is not None:
            use_default = use_default | feature_mask.to(use_default.device)
        stacked = torch.where(use_default[..., None], self.default_embeddings.to(stacked.dtype)[None], stacked)
        return F.normalize(self.mlp(stacked.flatten(1)), dim=-1)  # (N, F * D) -> (N, out)


class UserTower(nn.Module):
    """Hashed user id + mean of the clicked items' vectors -> L2-normalised user vectors."""

    def __init__(self, config: TwoTowerConfig):
        super().__init__()
        self.user_id = nn.Embedding(config.user_id_buckets, config.embedding_dim)
        self.mlp = _mlp(config.embedding_dim + config.output_dim, config.tower_hidden_sizes, config.output_dim)

    def forward(self, user_key: torch.Tensor, history_embeds: torch.Tensor, history_mask: torch.Tensor) -> torch.Tensor:
        # user_key: (B,), history_embeds: (B, H, D), history_mask: (B, H) -> (B, D)
        mask = history_mask.to(history_embeds.dtype)[..., None]  # (B, H, 1)
        # An empty history pools to 0: the user is then described by the id embedding alone.
        pooled = (history_embeds * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, D)
        user = self.user_id(user_key.remainder(self.user_id.num_embeddings))  # (B, E)
        return F.normalize(self.mlp(torch.cat([user, pooled], dim=-1)), dim=-1)


def in_batch_logits(
    user_embeds: torch.Tensor, item_embeds: torch.Tensor, temperature: float, log_q: torch.Tensor | None = None
) -> torch.Tensor:
    """cos(u_i, v_j) / τ - log p_j (Yi et al. Eq. 3). (B, D) @ (D, C) -> (B, C); vectors already L2-normalised."""
    logits = (user_embeds.float() @ item_embeds.float().T) / temperature  # (B, C)
    return logits if log_q is None else logits - log_q.float()[None]


# Copied from modeling_mtrec.models.mtrec.modeling_mtrec._unreadable_weights (this file stands alone as remote code)
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


class TwoTowerPreTrainedModel(PreTrainedModel):
    config: TwoTowerConfig
    config_class = TwoTowerConfig
    base_model_prefix = "two_tower"
    main_input_name = "item_key"

    # Copied from modeling_mtrec.models.mtrec.modeling_mtrec.MTRecPreTrainedModel.from_pretrained
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
        if isinstance(module, nn.Linear):
            # He init instead of N(0, 0.02): the towers are ReLU MLPs trained from scratch, and a 0.02 std would
            # shrink the signal at every layer.
            init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, ItemTower):
            init.normal_(module.default_embeddings, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, StreamingFrequencyEstimator):
            module.reset_parameters()


class TwoTowerModel(TwoTowerPreTrainedModel):
    """Two-tower retriever; owns its losses (logQ-corrected in-batch softmax + SSL), see `forward`."""

    def __init__(self, config: TwoTowerConfig):
        super().__init__(config)
        self.item_tower = ItemTower(config)
        self.user_tower = UserTower(config)
        self.frequency_estimator = StreamingFrequencyEstimator(
            config.frequency_hash_buckets, config.frequency_num_hashes, config.frequency_learning_rate,
            config.frequency_hash_seed,
        )
        self.post_init()

    # --------------------------------------------------------------- the scoring interface every model offers

    @property
    def vector_size(self) -> int:
        """D, the width of item and user vectors."""
        return self.config.output_dim

    def get_item_encoder(self) -> nn.Module:
        """Everything an item vector depends on (an item-vector cache fingerprints it)."""
        return self.item_tower

    def encode_items(self, feature_mask: torch.Tensor | None = None, **features: torch.Tensor) -> torch.Tensor:
        """Item vectors from `item_key`, `category_key`, `subcategory_key`, `entity_keys`, `word_keys`
        (and `text_embeds`). -> (N, output_dim), L2-normalised."""
        return self.item_tower(features, feature_mask)

    def encode_users(
        self, history_embeds: torch.Tensor, history_mask: torch.Tensor | None = None, *, user_key: torch.Tensor
    ) -> torch.Tensor:
        """User vectors from clicked-item vectors (B, H, D) and hashed user ids `user_key` (B,). -> (B, output_dim)."""
        if history_mask is None:
            history_mask = torch.ones(history_embeds.shape[:2], dtype=torch.bool, device=history_embeds.device)
        return self.user_tower(user_key, history_embeds, history_mask.bool())

    def score(self, user_embeds: torch.Tensor, item_embeds: torch.Tensor) -> torch.Tensor:
        """cos(u, v) / τ (vectors are L2-normalised). (B, D) with each user's candidates (B, C, D), or candidates
        shared by all (C, D) -> (B, C)."""
        if item_embeds.dim() == 2:
            return in_batch_logits(user_embeds, item_embeds, self.config.temperature)  # (B, C)
        return torch.einsum("bcd,bd->bc", item_embeds.float(), user_embeds.float()) / self.config.temperature

    # ----------------------------------------------------------------------------------------- augmentations

    def augment(
        self, features: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Two views of a batch of items: (features_1, mask_1, features_2, mask_2), masks (N, F) True = masked."""
        config = self.config
        n, f = features["item_key"].shape[0], config.num_features
        schemes = []
        for name in config.ssl_augmentations:
            if name == "random":
                schemes.append(random_feature_masks(n, f, config.mask_rate, generator))
            elif name == "complementary":
                schemes.append(complementary_masks(n, f, generator))
            elif name == "correlated":
                if config.feature_mutual_information is None:
                    raise ValueError(
                        "ssl_augmentations has 'correlated' but config.feature_mutual_information is None: compute "
                        "it with modeling_mtrec.models.two_tower.features.feature_mutual_information(item_features)"
                    )
                mi = torch.tensor(config.feature_mutual_information)
                schemes.append(correlated_feature_masks(n, mi, config.mask_rate, generator))
        if schemes:
            stacked = torch.stack([torch.stack(s) for s in schemes])  # (S, 2, N, F)
            pick = torch.randint(0, len(schemes), (n,), generator=generator)  # one scheme per item
            chosen = stacked[pick, :, torch.arange(n)]  # (N, 2, F)
            mask_1, mask_2 = chosen[:, 0], chosen[:, 1]  # (N, F) each
        else:
            mask_1 = mask_2 = torch.zeros(n, f, dtype=torch.bool)
        views = []
        for _ in range(2):
            view = dict(features)
            if "dropout" in config.ssl_augmentations:
                for name in MULTI_VALUED_FEATURES:
                    view[FEATURE_KEYS[name]] = dropout_multi_valued(
                        features[FEATURE_KEYS[name]], config.multi_value_dropout, generator
                    )
            views.append(view)
        device = features["item_key"].device
        return views[0], mask_1.to(device), views[1], mask_2.to(device)

    # ------------------------------------------------------------------------------------------------ forward

    def forward(
        self,
        item_key: torch.LongTensor,
        category_key: torch.LongTensor,
        subcategory_key: torch.LongTensor,
        entity_keys: torch.LongTensor,
        word_keys: torch.LongTensor,
        text_embeds: torch.FloatTensor | None = None,
        user_key: torch.LongTensor | None = None,
        history_index: torch.LongTensor | None = None,
        history_mask: torch.Tensor | None = None,
        positive_index: torch.LongTensor | None = None,
        item_log_q: torch.FloatTensor | None = None,
        ssl_item_key: torch.LongTensor | None = None,
        ssl_category_key: torch.LongTensor | None = None,
        ssl_subcategory_key: torch.LongTensor | None = None,
        ssl_entity_keys: torch.LongTensor | None = None,
        ssl_word_keys: torch.LongTensor | None = None,
        ssl_text_embeds: torch.FloatTensor | None = None,
        frequency_step: int | torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> TwoTowerOutput | tuple:
        r"""
        The batch carries each distinct item once (the users' clicks and histories); users point into it.

        item_key, category_key, subcategory_key (`torch.LongTensor` of shape `(num_items,)`): hashed ids (>= 0).
        entity_keys, word_keys (`torch.LongTensor` of shape `(num_items, L)`): hashed values, -1 = padding.
        text_embeds (`torch.FloatTensor` of shape `(num_items, text_embed_dim)`): frozen title vectors, if used.
        user_key (`torch.LongTensor` of shape `(batch_size,)`): hashed user ids.
        history_index (`torch.LongTensor` of shape `(batch_size, history_length)`): item rows each user clicked.
        history_mask (`torch.Tensor` of shape `(batch_size, history_length)`): True on real history entries.
        positive_index (`torch.LongTensor` of shape `(batch_size,)`): the item row each user clicked (the label).
        item_log_q (`torch.FloatTensor` of shape `(num_items,)`): log p_j per item row, for `logq_mode="static"`.
        ssl_* : features of the uniformly drawn SSL items, same shapes with num_ssl_items rows.
        frequency_step (`int`): step t of the streaming estimator (see module NOTE); default last t + 1.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        config = self.config
        features = {"item_key": item_key, "category_key": category_key, "subcategory_key": subcategory_key,
                    "entity_keys": entity_keys, "word_keys": word_keys}
        if text_embeds is not None:
            features["text_embeds"] = text_embeds
        item_embeds = self.item_tower(features)  # (N, D)

        main_loss = ssl_loss = logits = labels = log_q = user_embeds = ssl_logits = None
        if positive_index is not None:
            if user_key is None or history_index is None:
                raise ValueError("the main loss needs `user_key` and `history_index` with `positive_index`")
            if history_mask is None:
                history_mask = torch.ones_like(history_index, dtype=torch.bool)
            user_embeds = self.encode_users(item_embeds[history_index], history_mask, user_key=user_key)  # (B, D)
            # Columns: the distinct clicked items (module NOTE); labels: each user's column.
            columns, labels = torch.unique(positive_index, return_inverse=True)  # (C,), (B,)
            log_q = self._log_q(item_key[columns], None if item_log_q is None else item_log_q[columns], frequency_step)
            logits = in_batch_logits(user_embeds, item_embeds[columns], config.temperature, log_q)  # (B, C)
            main_loss = F.cross_entropy(logits, labels)

        if ssl_item_key is not None and config.ssl_weight > 0:
            ssl_features = {"item_key": ssl_item_key, "category_key": ssl_category_key,
                            "subcategory_key": ssl_subcategory_key, "entity_keys": ssl_entity_keys,
                            "word_keys": ssl_word_keys}
            if ssl_text_embeds is not None:
                ssl_features["text_embeds"] = ssl_text_embeds
            if any(v is None for v in ssl_features.values()):
                raise ValueError(f"incomplete SSL batch: missing {[k for k, v in ssl_features.items() if v is None]}")
            view_1, mask_1, view_2, mask_2 = self.augment(ssl_features)
            z_1, z_2 = self.item_tower(view_1, mask_1), self.item_tower(view_2, mask_2)  # (S, D) each
            ssl_logits = (z_1.float() @ z_2.float().T) / config.ssl_temperature  # (S, S)
            ssl_loss = F.cross_entropy(ssl_logits, torch.arange(len(z_1), device=z_1.device))

        loss = None
        if main_loss is not None or ssl_loss is not None:
            loss = (main_loss if main_loss is not None else 0.0) + (
                config.ssl_weight * ssl_loss if ssl_loss is not None else 0.0
            )
        output = TwoTowerOutput(
            loss=loss, main_loss=main_loss, ssl_loss=ssl_loss, logits=logits, labels=labels, log_q=log_q,
            user_embeds=user_embeds, item_embeds=item_embeds, ssl_logits=ssl_logits,
        )
        return output if return_dict else output.to_tuple()

    def _log_q(
        self, column_keys: torch.Tensor, static_log_q: torch.Tensor | None, step: int | torch.Tensor | None
    ) -> torch.Tensor:
        """log p_j of the batch's distinct items (C,) under `config.logq_mode`."""
        mode = self.config.logq_mode
        if mode == "off":
            return torch.zeros(column_keys.shape, device=column_keys.device)
        if mode == "static":
            if static_log_q is None:
                raise ValueError("logq_mode='static' needs `item_log_q` in the batch (TwoTowerCollator(item_log_q=...))")
            return static_log_q.float()
        if self.training:
            self.frequency_estimator.update(column_keys, step)
        return self.frequency_estimator.log_probability(column_keys)


__all__ = [
    "StreamingFrequencyEstimator",
    "TwoTowerModel",
    "TwoTowerOutput",
    "TwoTowerPreTrainedModel",
    "complementary_masks",
    "correlated_feature_masks",
    "dropout_multi_valued",
    "in_batch_logits",
    "random_feature_masks",
]
