"""Multi-domain search-and-recommendation foundation model for cold-start domains.

Paper: Gong et al., "An Unified Search and Recommendation Foundation Model for Cold-Start Scenario", CIKM 2023
(arXiv:2309.08939). One model is pretrained on many search and recommendation domains, then fine-tuned on a new
domain with little data. The submodules are the paper's levels, so a freeze split is one call:

    embeddings        L0: ID tables (user, query, item; the item table also embeds the history), sparse
                      feature tables, and the language model itself when it is fine-tuned end to end
    encoders          L1: W_lm (E_lm(Q) = W_lm . MEAN(LM(tokens of Q)), one W_lm for queries and items), the ID
                      linear maps, the sparse MLPs, the user encoder (a transformer over the user token and the
                      fused vectors of the history items)
    fusion            aspect gating: E = sum_a w_a E_a over a in {id, text, sparse}, mean / [CLS] / domain gating
    domain_adaptive   x̂ = W(x ⊕ E_D), x = user ⊕ query ⊕ item
    multi_task        MMoE (default), PLE or shared-bottom over x̂
    heads             the CTR and the query-item relevance towers

Loss = w_ctr L_ctr + w_rel L_relevance + w_reg L_reg, L_reg = sum over the domain pairs of the batch of
JS(p(x̂_i) ‖ p(x̂_j)) (or MMD², the alternative the paper compares).

NOTE (the minibatch JS estimator, which the paper does not give): x̂ is standardised with the batch's pooled mean
and standard deviation per coordinate, each coordinate's values are soft-binned into `js_num_bins` Gaussian
bins over [-3, 3] (each value spreads a unit mass over the bins, bandwidth = the bin spacing), each domain's
histogram is the mean of its rows' soft assignments, and the JS divergence of two domains is the mean over
coordinates of the JS divergence of their histograms. Why this one: (1) it compares whole marginal
distributions, not only their means; (2) the pooled standardisation makes it scale-invariant, so the model cannot
shrink the regulariser by shrinking x̂ -- the simpler estimator offered as `js_estimator="softmax"` (JS between the
domains' mean softmax(x̂) over coordinates) compares only first moments and goes to 0 when x̂ shrinks towards 0,
where every softmax is uniform; (3) it is bounded by ln 2 per pair and its gradients are smooth. It ignores the
dependence between coordinates (a product of marginals), which MMD with a Gaussian kernel does not.

NOTE (x): the paper feeds the concatenation x = user ⊕ query ⊕ item to the domain-adaptive layer (the default,
`interaction_features=False`). MLPs learn multiplicative user-item and query-item matches slowly; on the embedded
corpus after 5 epochs, relevance AUC was 0.80 with the concatenation and 0.97 with `interaction_features=True`,
which appends user ⊙ item and query ⊙ item (an exploratory run; the benchmark has both rows).

NOTE (other departures and choices): gating logits are scaled by 1/sqrt(d) (scaled dot product) so that they do
not saturate the softmax at initialisation; an aspect a row does not have (no ID, no text, no sparse feature)
gets weight 0 and the others are renormalised, which is how "the text aspect carries the representation when IDs
are missing"; a recommendation row (no query) gets a learned empty-query vector; IDs and sparse values are hashed
into buckets by the data pipeline (bucket 0 = missing / padding). MMD uses the biased (V-statistic) estimator
with a multi-bandwidth Gaussian kernel on the same standardised x̂: it is exactly 0 for two domains with the
same empirical distribution even when their row counts differ.

This file imports only its sibling configuration, torch and transformers, so that a saved folder loads as Hub
remote code (`trust_remote_code=True`) without the package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertModel, PreTrainedModel
from transformers import initialization as init
from transformers.models.bert.modeling_bert import BertEmbeddings
from transformers.utils import ModelOutput, logging

from .configuration_foundation import ASPECTS, FREEZE_SPLITS, TASKS, FoundationConfig

logger = logging.get_logger(__name__)

IGNORE_LABEL = -100


# --------------------------------------------------------------------------------------------- small functions


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """MEAN(LM(tokens)): attention-masked mean of the last hidden states. (T, L, H), (T, L) -> (T, H).

    The same pooling as the package's frozen title vectors (sentence-transformers' pooling of all-MiniLM-L6-v2), so
    cached vectors and end-to-end vectors of one text agree.
    """
    mask = attention_mask[..., None].to(hidden.dtype)  # (T, L, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim -2 of the rows where `mask` is true; 0 where none is. (..., S, D), (..., S) -> (..., D)."""
    weights = mask.to(values.dtype).unsqueeze(-1)  # (..., S, 1)
    return (values * weights).sum(-2) / weights.sum(-2).clamp(min=1)


def js_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Jensen-Shannon divergence (natural log) over the last dim: 0.5 KL(p ‖ m) + 0.5 KL(q ‖ m), m = (p + q) / 2.

    0 log 0 counts as 0; the logs are clamped at `eps` so the gradient stays finite at empty bins.
    """
    m = 0.5 * (p + q)
    log_m = m.clamp_min(eps).log()
    kl_p = (p * (p.clamp_min(eps).log() - log_m)).sum(-1)
    kl_q = (q * (q.clamp_min(eps).log() - log_m)).sum(-1)
    return 0.5 * (kl_p + kl_q)


def _standardize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-coordinate standardisation with the pooled batch mean and (population) variance. (B, D) -> (B, D)."""
    mean = x.mean(0, keepdim=True)
    var = x.var(0, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def _domain_means(domain_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Row-normalised membership of the rows in the domains present. (B,) -> (K, B), rows sum to 1."""
    present = torch.unique(domain_ids)  # (K,)
    member = (domain_ids[None, :] == present[:, None]).to(dtype)  # (K, B)
    return member / member.sum(1, keepdim=True)


def _upper_pairs_sum(matrix: torch.Tensor) -> torch.Tensor:
    """Sum of the entries above the diagonal of a (K, K) matrix: each unordered pair once."""
    k = matrix.shape[0]
    return matrix[torch.triu_indices(k, k, offset=1, device=matrix.device).unbind(0)].sum()


def soft_histograms(z: torch.Tensor, num_bins: int, low: float = -3.0, high: float = 3.0) -> torch.Tensor:
    """Soft assignment of each value to `num_bins` Gaussian bins on [low, high]. (B, D) -> (B, D, num_bins).

    Each value spreads a unit mass: softmax over bins of -(z - c_k)² / (2 h²), h = the bin spacing.
    """
    centers = torch.linspace(low, high, num_bins, device=z.device, dtype=z.dtype)  # (K_bins,)
    spacing = (high - low) / max(num_bins - 1, 1)
    logits = -((z[..., None] - centers) ** 2) / (2 * spacing**2)  # (B, D, K_bins)
    return logits.softmax(-1)


def js_regularizer(
    x: torch.Tensor, domain_ids: torch.Tensor, estimator: str = "histogram", num_bins: int = 16
) -> torch.Tensor:
    """Sum over the pairs of domains present in the batch of JS(p(x̂_i) ‖ p(x̂_j)); see the module NOTE.

    Args:
        x: x̂, (B, D).
        domain_ids: (B,) domain of each row.
        estimator: `"histogram"` (mean over coordinates of the JS of soft histograms of standardised values) or
            `"softmax"` (JS of the domains' mean softmax over coordinates).
    """
    members = _domain_means(domain_ids, x.dtype)  # (K, B)
    if members.shape[0] < 2:
        return x.new_zeros(())
    if estimator == "histogram":
        assign = soft_histograms(_standardize(x), num_bins)  # (B, D, bins)
        hist = torch.einsum("kb,bdn->kdn", members, assign)  # (K, D, bins)
        pairwise = js_divergence(hist[:, None], hist[None, :]).mean(-1)  # (K, K, D) -> (K, K)
    elif estimator == "softmax":
        dist = members @ x.softmax(-1)  # (K, B) @ (B, D) -> (K, D)
        pairwise = js_divergence(dist[:, None], dist[None, :])  # (K, K)
    else:
        raise ValueError(f"unknown JS estimator {estimator!r}")
    return _upper_pairs_sum(pairwise)


def mmd_regularizer(x: torch.Tensor, domain_ids: torch.Tensor, bandwidths: list[float]) -> torch.Tensor:
    """Sum over the pairs of domains of the biased MMD² with k(x, y) = mean_s exp(-|x - y|² / (2 s² D)).

    On the standardised x̂ (pooled over the batch, as for JS). MMD²_ij = G_ii + G_jj - 2 G_ij with G_ij the mean
    kernel value between the rows of domains i and j, which is 0 for equal empirical distributions.
    """
    members = _domain_means(domain_ids, x.dtype)  # (K, B)
    if members.shape[0] < 2:
        return x.new_zeros(())
    z = _standardize(x)
    dim = z.shape[1]
    sq_dist = torch.cdist(z, z).pow(2)  # (B, B)
    kernel = torch.stack([torch.exp(-sq_dist / (2 * s**2 * dim)) for s in bandwidths]).mean(0)  # (B, B)
    gram = members @ kernel @ members.T  # (K, B) @ (B, B) @ (B, K) -> (K, K)
    diag = gram.diagonal()
    return _upper_pairs_sum(diag[:, None] + diag[None, :] - 2 * gram)


def _mlp(in_dim: int, sizes: list[int], dropout: float, last_activation: bool = True) -> nn.Sequential:
    """Linear -> ReLU -> Dropout per layer of `sizes` (the last without ReLU/Dropout when `last_activation` is off).

    ReLU and Dropout share one index of the Sequential, so the Linear layers' weight names (`0`, `2`, ...) do not
    depend on `dropout`: with a separate Dropout entry, a folder saved with dropout 0 loaded with another dropout
    (`from_pretrained(folder, dropout=0.1)` to fine-tune) silently re-initialised every Linear after the first
    (the common model tests found it).
    """
    layers: list[nn.Module] = []
    for i, width in enumerate(sizes):
        layers.append(nn.Linear(in_dim, width))
        if last_activation or i < len(sizes) - 1:
            layers.append(nn.Sequential(nn.ReLU(), nn.Dropout(dropout)) if dropout > 0 else nn.ReLU())
        in_dim = width
    return nn.Sequential(*layers)


def _bag_mean(table: nn.Embedding, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean embedding of the non-zero (non-padding) ids of each bag, and whether it has any. (..., S) -> (..., D), (...)."""
    present = ids != 0  # (..., S)
    return masked_mean(table(ids), present), present.any(-1)


# ---------------------------------------------------------------------------------------------------- outputs


@dataclass
class FoundationOutput(ModelOutput):
    """Output of [`FoundationModel`].

    Args:
        loss: w_ctr L_ctr + w_rel L_relevance + w_reg L_reg over the parts that have labels (None without labels).
        ctr_loss: binary cross-entropy of the clicks (rows with `click_labels` != -100), or None.
        relevance_loss: binary cross-entropy of the relevance labels (rows with `relevance_labels` != -100), or None.
        regularizer_loss: the JS / MMD regulariser L_reg (before its weight), or None when it is off.
        ctr_logits: (B,) click logits.
        relevance_logits: (B,) query-item relevance logits (meaningful on search rows).
        query_aspect_weights: (B, 3) w_a of the query over (id, text, sparse); rows without a query are all 0.
        item_aspect_weights: (B, 3) w_a of the item over (id, text, sparse).
        expert_gate_weights: (B, 2, E) each task's (ctr, relevance) gate over the experts (MMoE; PLE: its last
            level, task experts first), None for shared-bottom.
        domain_adapted_states: (B, domain_adaptive_dim) x̂.
    """

    loss: torch.FloatTensor | None = None
    ctr_loss: torch.FloatTensor | None = None
    relevance_loss: torch.FloatTensor | None = None
    regularizer_loss: torch.FloatTensor | None = None
    ctr_logits: torch.FloatTensor | None = None
    relevance_logits: torch.FloatTensor | None = None
    query_aspect_weights: torch.FloatTensor | None = None
    item_aspect_weights: torch.FloatTensor | None = None
    expert_gate_weights: torch.FloatTensor | None = None
    domain_adapted_states: torch.FloatTensor | None = None


# ---------------------------------------------------------------------------------------------------- modules


class DomainEmbedding(nn.Embedding):
    """A table with one row per domain; `grow()` appends a row initialised to the mean of the existing ones."""

    @torch.no_grad()
    def grow(self) -> None:
        old = self.weight
        new = torch.cat([old.detach(), old.detach().mean(0, keepdim=True)])  # (K + 1, D)
        self.weight = nn.Parameter(new, requires_grad=old.requires_grad)
        self.num_embeddings += 1


class FoundationEmbeddings(nn.Module):
    """L0: the ID tables, the sparse feature tables and, when fine-tuned end to end, the language model."""

    def __init__(self, config: FoundationConfig):
        super().__init__()
        self.user_id = nn.Embedding(config.user_id_buckets, config.id_embedding_dim, padding_idx=0)
        self.user_sparse = nn.Embedding(config.sparse_buckets, config.embedding_dim, padding_idx=0)
        if "id" in config.aspects:
            # The item table embeds the candidate item and the history items: one id, one vector.
            self.item_id = nn.Embedding(config.item_id_buckets, config.id_embedding_dim, padding_idx=0)
            self.query_id = nn.Embedding(config.query_id_buckets, config.id_embedding_dim, padding_idx=0)
        if "sparse" in config.aspects:
            self.query_sparse = nn.Embedding(config.sparse_buckets, config.embedding_dim, padding_idx=0)
            self.item_sparse = nn.Embedding(config.sparse_buckets, config.embedding_dim, padding_idx=0)
        # The pooler would be dead weight: the text vector is the mean of the last hidden states.
        self.text_model = (
            BertModel(config.text_encoder_config, add_pooling_layer=False)
            if config.text_encoder_config is not None and "text" in config.aspects
            else None
        )


class FoundationEncoders(nn.Module):
    """L1: W_lm, the ID linear maps, the sparse MLPs and the user encoder."""

    def __init__(self, config: FoundationConfig):
        super().__init__()
        d = config.embedding_dim
        sparse_sizes = config.sparse_hidden_sizes + [d]
        self.user_id_projection = nn.Linear(config.id_embedding_dim, d)
        self.user_sparse_mlp = _mlp(d, sparse_sizes, config.dropout, last_activation=False)
        if "id" in config.aspects:
            self.item_id_projection = nn.Linear(config.id_embedding_dim, d)
            self.query_id_projection = nn.Linear(config.id_embedding_dim, d)
        if "sparse" in config.aspects:
            self.query_sparse_mlp = _mlp(d, sparse_sizes, config.dropout, last_activation=False)
            self.item_sparse_mlp = _mlp(d, sparse_sizes, config.dropout, last_activation=False)
        if "text" in config.aspects:
            self.text_projection = nn.Linear(config.text_embed_dim, d)  # W_lm, shared by queries and items
        layer = nn.TransformerEncoderLayer(
            d, config.user_encoder_heads, dim_feedforward=2 * d, dropout=config.dropout, batch_first=True
        )
        self.user_encoder = nn.TransformerEncoder(layer, config.user_encoder_layers, enable_nested_tensor=False)


class AspectGating(nn.Module):
    """E = sum_a w_a E_a over the aspects a row has; `mean`, `cls` or `domain` weights (see the module NOTE)."""

    def __init__(self, strategy: str, dim: int, num_domains: int):
        super().__init__()
        self.strategy = strategy
        self.scale = 1.0 / math.sqrt(dim)
        if strategy == "cls":
            self.cls_embedding = nn.Parameter(torch.zeros(dim))  # E_CLS
        elif strategy == "domain":
            self.domain_embeddings = DomainEmbedding(num_domains, dim)  # E_Dk

    def forward(
        self, aspects: torch.Tensor, present: torch.Tensor, domain_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, ..., A, D), (B, ..., A), (B,) -> fused (B, ..., D), weights (B, ..., A); all-zero weights where no
        aspect is present."""
        if self.strategy == "mean":
            weights = present.to(aspects.dtype)
            weights = weights / weights.sum(-1, keepdim=True).clamp(min=1)
        else:
            if self.strategy == "cls":
                key = self.cls_embedding  # (D,)
                logits = aspects @ key * self.scale  # (B, ..., A, D) @ (D,) -> (B, ..., A)
            else:
                key = self.domain_embeddings(domain_ids)  # (B, D)
                key = key.view(key.shape[0], *([1] * (aspects.dim() - 2)), key.shape[1])  # (B, 1, ..., 1, D)
                logits = (aspects * key).sum(-1) * self.scale  # (B, ..., A, D) -> (B, ..., A)
            logits = logits.masked_fill(~present, torch.finfo(logits.dtype).min)
            weights = logits.softmax(-1) * present.to(logits.dtype)  # a row with no aspect: all 0
        fused = (weights.unsqueeze(-1) * aspects).sum(-2)  # (B, ..., A, 1) * (B, ..., A, D) -> (B, ..., D)
        return fused, weights


class FoundationFusion(nn.Module):
    """Aspect gating fusion for queries and items (history items share the item gating)."""

    def __init__(self, config: FoundationConfig):
        super().__init__()
        d = config.embedding_dim
        self.query_gating = AspectGating(config.gating, d, config.num_domains)
        self.item_gating = AspectGating(config.gating, d, config.num_domains)
        self.empty_query = nn.Parameter(torch.zeros(d))  # the query vector of recommendation rows


class DomainAdaptiveLayer(nn.Module):
    """x̂ = W(x ⊕ E_D), or W x with `use_domain_adaptive=False`. (B, 3d or 5d), (B,) -> (B, domain_adaptive_dim)."""

    def __init__(self, config: FoundationConfig):
        super().__init__()
        in_dim = (5 if config.interaction_features else 3) * config.embedding_dim
        self.domain_embeddings = None
        if config.use_domain_adaptive:
            self.domain_embeddings = DomainEmbedding(config.num_domains, config.domain_embedding_dim)
            in_dim += config.domain_embedding_dim
        self.projection = nn.Linear(in_dim, config.domain_adaptive_dim)

    def forward(self, x: torch.Tensor, domain_ids: torch.Tensor) -> torch.Tensor:
        if self.domain_embeddings is not None:
            x = torch.cat([x, self.domain_embeddings(domain_ids)], dim=-1)  # (B, 3d + d_D)
        return self.projection(x)


class MMoE(nn.Module):
    """Multi-gate mixture of experts: shared experts, one softmax gate per task."""

    def __init__(self, in_dim: int, config: FoundationConfig):
        super().__init__()
        self.experts = nn.ModuleList(
            _mlp(in_dim, config.expert_hidden_sizes, config.dropout) for _ in range(config.num_experts)
        )
        self.gates = nn.ModuleList(nn.Linear(in_dim, config.num_experts) for _ in TASKS)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        experts = torch.stack([expert(x) for expert in self.experts], dim=1)  # (B, E, H)
        gates = torch.stack([gate(x).softmax(-1) for gate in self.gates], dim=1)  # (B, T, E)
        mixed = gates @ experts  # (B, T, E) @ (B, E, H) -> (B, T, H)
        return list(mixed.unbind(1)), gates


class PLELevel(nn.Module):
    """One customised gate control (CGC) level of PLE: task-specific and shared experts, one gate per task (over
    its own and the shared experts) and, below the last level, a shared gate over all experts."""

    def __init__(self, in_dim: int, config: FoundationConfig, last: bool):
        super().__init__()
        n_task, n_shared = config.ple_num_task_experts, config.ple_num_shared_experts
        sizes, p = config.expert_hidden_sizes, config.dropout
        self.task_experts = nn.ModuleList(
            nn.ModuleList(_mlp(in_dim, sizes, p) for _ in range(n_task)) for _ in TASKS
        )
        self.shared_experts = nn.ModuleList(_mlp(in_dim, sizes, p) for _ in range(n_shared))
        self.task_gates = nn.ModuleList(nn.Linear(in_dim, n_task + n_shared) for _ in TASKS)
        self.shared_gate = None if last else nn.Linear(in_dim, len(TASKS) * n_task + n_shared)

    def forward(
        self, task_inputs: list[torch.Tensor], shared_input: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor]:
        shared = [expert(shared_input) for expert in self.shared_experts]  # n_shared x (B, H)
        outputs, gates, all_task = [], [], []
        for experts, gate, x in zip(self.task_experts, self.task_gates, task_inputs, strict=True):
            own = [expert(x) for expert in experts]
            all_task += own
            stacked = torch.stack(own + shared, dim=1)  # (B, n_task + n_shared, H)
            weights = gate(x).softmax(-1)  # (B, n_task + n_shared)
            gates.append(weights)
            outputs.append((weights.unsqueeze(1) @ stacked).squeeze(1))  # (B, 1, E) @ (B, E, H) -> (B, H)
        shared_out = None
        if self.shared_gate is not None:
            stacked = torch.stack(all_task + shared, dim=1)  # (B, T n_task + n_shared, H)
            weights = self.shared_gate(shared_input).softmax(-1)
            shared_out = (weights.unsqueeze(1) @ stacked).squeeze(1)
        return outputs, shared_out, torch.stack(gates, dim=1)  # (B, T, n_task + n_shared)


class PLE(nn.Module):
    """Progressive layered extraction: `ple_num_levels` stacked CGC levels."""

    def __init__(self, in_dim: int, config: FoundationConfig):
        super().__init__()
        width = config.expert_hidden_sizes[-1]
        self.levels = nn.ModuleList(
            PLELevel(in_dim if i == 0 else width, config, last=i == config.ple_num_levels - 1)
            for i in range(config.ple_num_levels)
        )

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        task_inputs, shared = [x] * len(TASKS), x
        gates = None
        for level in self.levels:
            task_inputs, shared, gates = level(task_inputs, shared)
        return task_inputs, gates


class SharedBottom(nn.Module):
    """One MLP shared by both tasks; no gates."""

    def __init__(self, in_dim: int, config: FoundationConfig):
        super().__init__()
        self.bottom = _mlp(in_dim, config.expert_hidden_sizes, config.dropout)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], None]:
        shared = self.bottom(x)
        return [shared] * len(TASKS), None


_MTL_MODULES = {"mmoe": MMoE, "ple": PLE, "shared_bottom": SharedBottom}


# ------------------------------------------------------------------------------------------------------ model


# Copied from modeling_mtrec.models.mtrec.modeling_mtrec._init_bert_buffers (this file stands alone as remote code)
def _init_bert_buffers(module: BertEmbeddings) -> None:
    """Sets the buffers `BertPreTrainedModel._init_weights` sets (our base class is not BERT's)."""
    init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
    init.zeros_(module.token_type_ids)


class FoundationPreTrainedModel(PreTrainedModel):
    config: FoundationConfig
    config_class = FoundationConfig
    base_model_prefix = "foundation"
    main_input_name = "domain_ids"
    _no_split_modules = ["BertEmbeddings", "BertLayer"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        in_lm = module in getattr(self, "_lm_modules", ())
        if isinstance(module, nn.Linear) and not in_lm:
            # He init instead of N(0, 0.02): ReLU MLPs trained from scratch, where 0.02 would shrink the signal at
            # every layer. The language model keeps BERT's own initialiser.
            init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
            return
        super()._init_weights(module)
        if isinstance(module, AspectGating) and module.strategy == "cls":
            init.normal_(module.cls_embedding, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, FoundationFusion):
            init.normal_(module.empty_query, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, BertEmbeddings):
            _init_bert_buffers(module)


class FoundationModel(FoundationPreTrainedModel):
    """The foundation model; owns its losses (see `forward`), `freeze(split)` and `add_domain(name)`."""

    def __init__(self, config: FoundationConfig):
        super().__init__(config)
        self.embeddings = FoundationEmbeddings(config)  # L0
        self.encoders = FoundationEncoders(config)  # L1
        self.fusion = FoundationFusion(config)
        self.domain_adaptive = DomainAdaptiveLayer(config)
        self.multi_task = _MTL_MODULES[config.mtl_module](config.domain_adaptive_dim, config)
        tower_in = config.expert_hidden_sizes[-1]
        self.heads = nn.ModuleDict(
            {task: nn.Sequential(_mlp(tower_in, config.tower_hidden_sizes, config.dropout),
                                 nn.Linear(config.tower_hidden_sizes[-1] if config.tower_hidden_sizes else tower_in, 1))
             for task in TASKS}
        )
        text_model = self.embeddings.text_model
        self._lm_modules = set(text_model.modules()) if text_model is not None else set()
        self.post_init()

    # ------------------------------------------------------------------------------------- cold-start API

    def freeze(self, split: str = "L0+L1") -> list[str]:
        """Freeze exactly one of the paper's splits and unfreeze the rest; returns the frozen parameter names.

        `"L0"`: the ID and sparse tables (and the LM when it is inside the model); `"L0+L1"`: those and W_lm, the
        ID maps, the sparse MLPs and the user encoder; `"none"`: nothing. The paper reports L0 + L1 best for a
        cold-start domain (+0.0043 AUC). Build the optimizer after calling it (the Trainer does: it keeps parameters that require grad).
        """
        if split not in FREEZE_SPLITS:
            raise ValueError(f"unknown freeze split {split!r}; choose one of {FREEZE_SPLITS}")
        prefixes = {"none": (), "L0": ("embeddings.",), "L0+L1": ("embeddings.", "encoders.")}[split]
        frozen = []
        for name, param in self.named_parameters():
            is_frozen = name.startswith(prefixes) if prefixes else False
            param.requires_grad_(not is_frozen)
            if is_frozen:
                frozen.append(name)
        return frozen

    def add_domain(self, name: str) -> int:
        """Add a domain: a new row in every per-domain table (gating E_Dk, the domain-adaptive E_D), initialised to
        the mean of the existing domains' rows; the old domains' outputs are unchanged. Returns its domain id.

        Call it before building the optimizer: the grown tables are new `nn.Parameter`s.
        """
        if name in self.config.domains:
            raise ValueError(f"domain {name!r} already exists (domains: {self.config.domains})")
        for module in self.modules():
            if isinstance(module, DomainEmbedding):
                module.grow()
        self.config.domains = [*self.config.domains, name]
        return self.config.num_domains - 1

    # ------------------------------------------------------------------------------------------ encoding

    def encode_texts(
        self,
        text_embeds: torch.Tensor | None = None,
        text_input_ids: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """E_lm of a table of texts: W_lm . MEAN(LM(tokens)). (T, H) or (T, L) -> (T, d); None without texts."""
        if "text" not in self.config.aspects:
            return None
        if text_embeds is None and text_input_ids is not None:
            if self.embeddings.text_model is None:
                raise ValueError(
                    "text_input_ids need the language model inside the model (config.text_encoder_config); "
                    "without it pass precomputed mean-pooled vectors as text_embeds"
                )
            if text_attention_mask is None:
                text_attention_mask = torch.ones_like(text_input_ids)
            hidden = self.embeddings.text_model(
                input_ids=text_input_ids, attention_mask=text_attention_mask
            ).last_hidden_state  # (T, L, H)
            text_embeds = mean_pool(hidden, text_attention_mask)  # (T, H)
        if text_embeds is None:
            return None
        return self.encoders.text_projection(text_embeds)  # (T, H) -> (T, d)

    def _aspects(
        self,
        kind: str,
        ids: torch.Tensor | None,
        sparse_ids: torch.Tensor | None,
        text_index: torch.Tensor | None,
        texts: torch.Tensor | None,
        batch_shape: tuple[int, ...],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Aspect vectors and presence of queries or items, in `ASPECTS` order. -> (*S, 3, d), (*S, 3)."""
        d = self.config.embedding_dim
        device = self.fusion.empty_query.device
        vectors = torch.zeros(*batch_shape, len(ASPECTS), d, device=device, dtype=self.fusion.empty_query.dtype)
        present = torch.zeros(*batch_shape, len(ASPECTS), dtype=torch.bool, device=device)
        use = self.config.aspects
        if ids is not None and "id" in use:
            table = self.embeddings.item_id if kind in ("item", "history") else self.embeddings.query_id
            projection = (
                self.encoders.item_id_projection if kind in ("item", "history") else self.encoders.query_id_projection
            )
            vectors[..., 0, :] = projection(table(ids))
            present[..., 0] = ids != 0
        if text_index is not None and texts is not None and "text" in use:
            has_text = text_index >= 0
            vectors[..., 1, :] = texts[text_index.clamp(min=0)] * has_text.unsqueeze(-1)
            present[..., 1] = has_text
        if sparse_ids is not None and "sparse" in use and kind != "history":
            table = self.embeddings.item_sparse if kind == "item" else self.embeddings.query_sparse
            mlp = self.encoders.item_sparse_mlp if kind == "item" else self.encoders.query_sparse_mlp
            pooled, has_sparse = _bag_mean(table, sparse_ids)
            vectors[..., 2, :] = mlp(pooled) * has_sparse.unsqueeze(-1)
            present[..., 2] = has_sparse
        return vectors, present

    def encode_user(
        self,
        domain_ids: torch.Tensor,
        user_ids: torch.Tensor | None,
        user_sparse_ids: torch.Tensor | None,
        history_vectors: torch.Tensor | None,
        history_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """User vectors: a transformer over [user token, fused history items]; the output at the user token.
        (B,), (B,), (B, S), (B, H, d), (B, H) -> (B, d)."""
        batch = domain_ids.shape[0]
        token = torch.zeros(batch, self.config.embedding_dim, device=domain_ids.device, dtype=self.fusion.empty_query.dtype)
        if user_ids is not None:
            token = token + self.encoders.user_id_projection(self.embeddings.user_id(user_ids))
        if user_sparse_ids is not None:
            pooled, has_sparse = _bag_mean(self.embeddings.user_sparse, user_sparse_ids)
            token = token + self.encoders.user_sparse_mlp(pooled) * has_sparse.unsqueeze(-1)
        sequence, padding = token[:, None], torch.zeros(batch, 1, dtype=torch.bool, device=token.device)
        if history_vectors is not None and history_vectors.shape[1] > 0:
            sequence = torch.cat([sequence, history_vectors], dim=1)  # (B, 1 + H, d)
            padding = torch.cat([padding, ~history_mask.bool()], dim=1)  # (B, 1 + H): True = ignored
        return self.encoders.user_encoder(sequence, src_key_padding_mask=padding)[:, 0]

    # ------------------------------------------------------------------------------------------- forward

    def forward(
        self,
        domain_ids: torch.Tensor,
        user_ids: torch.Tensor | None = None,
        user_sparse_ids: torch.Tensor | None = None,
        history_item_ids: torch.Tensor | None = None,
        history_text_index: torch.Tensor | None = None,
        history_mask: torch.Tensor | None = None,
        query_ids: torch.Tensor | None = None,
        query_sparse_ids: torch.Tensor | None = None,
        query_text_index: torch.Tensor | None = None,
        item_ids: torch.Tensor | None = None,
        item_sparse_ids: torch.Tensor | None = None,
        item_text_index: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
        text_input_ids: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
        click_labels: torch.Tensor | None = None,
        relevance_labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> FoundationOutput | tuple:
        r"""
        One row per (user, query or none, item) impression; ids are hash buckets (0 = missing / padding).

        Args:
            domain_ids: (B,) index into `config.domains`.
            user_ids: (B,) user-id buckets. user_sparse_ids: (B, Su) the user's sparse-feature buckets.
            history_item_ids: (B, H) item-id buckets of the items the user interacted with; history_text_index
                (B, H) their rows in the text table (-1: no text); history_mask (B, H) true on real items.
            query_ids, query_sparse_ids (B, Sq), query_text_index: the query's aspects; a row where none is
                present (a recommendation row) gets the learned empty-query vector.
            item_ids, item_sparse_ids (B, Si), item_text_index: the item's aspects.
            text_embeds: (T, text_embed_dim) mean-pooled LM vectors of the batch's distinct texts (frozen LM), or
            text_input_ids / text_attention_mask: (T, L) their tokens (LM inside the model, end to end).
            click_labels, relevance_labels: (B,) 0/1, -100 where absent.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        batch = domain_ids.shape[0]
        texts = self.encode_texts(text_embeds, text_input_ids, text_attention_mask)  # (T, d) or None

        # Aspect gating fusion: query, item and history items.
        q_vectors, q_present = self._aspects("query", query_ids, query_sparse_ids, query_text_index, texts, (batch,))
        query, q_weights = self.fusion.query_gating(q_vectors, q_present, domain_ids)  # (B, d), (B, 3)
        no_query = ~q_present.any(-1, keepdim=True)  # (B, 1): recommendation rows
        query = torch.where(no_query, self.fusion.empty_query.expand_as(query), query)
        i_vectors, i_present = self._aspects("item", item_ids, item_sparse_ids, item_text_index, texts, (batch,))
        item, i_weights = self.fusion.item_gating(i_vectors, i_present, domain_ids)  # (B, d), (B, 3)
        history = None
        if history_item_ids is not None:
            if history_mask is None:
                history_mask = history_item_ids != 0
            h_vectors, h_present = self._aspects(
                "history", history_item_ids, None, history_text_index, texts, tuple(history_item_ids.shape)
            )  # (B, H, 3, d)
            history, _ = self.fusion.item_gating(h_vectors, h_present, domain_ids)  # (B, H, d)
        user = self.encode_user(domain_ids, user_ids, user_sparse_ids, history, history_mask)  # (B, d)

        # Domain-adaptive multi-task learning.
        parts = [user, query, item]
        if self.config.interaction_features:
            parts += [user * item, query * item]
        x = torch.cat(parts, dim=-1)  # (B, 3d) or (B, 5d)
        x_hat = self.domain_adaptive(x, domain_ids)  # (B, d_hat)
        task_inputs, gates = self.multi_task(x_hat)
        ctr_logits = self.heads["ctr"](task_inputs[0]).squeeze(-1)  # (B,)
        relevance_logits = self.heads["relevance"](task_inputs[1]).squeeze(-1)  # (B,)

        ctr_loss = _masked_bce(ctr_logits, click_labels)
        relevance_loss = _masked_bce(relevance_logits, relevance_labels)
        regularizer_loss = None
        has_labels = click_labels is not None or relevance_labels is not None
        if has_labels and self.config.regularizer != "none":
            if self.config.regularizer == "js":
                regularizer_loss = js_regularizer(x_hat, domain_ids, self.config.js_estimator, self.config.js_num_bins)
            else:
                regularizer_loss = mmd_regularizer(x_hat, domain_ids, self.config.mmd_bandwidths)
        parts = [
            (self.config.ctr_loss_weight, ctr_loss),
            (self.config.relevance_loss_weight, relevance_loss),
            (self.config.regularizer_weight, regularizer_loss),
        ]
        loss = None
        if ctr_loss is not None or relevance_loss is not None:
            loss = sum(weight * part for weight, part in parts if part is not None)

        output = FoundationOutput(
            loss=loss,
            ctr_loss=ctr_loss,
            relevance_loss=relevance_loss,
            regularizer_loss=regularizer_loss,
            ctr_logits=ctr_logits,
            relevance_logits=relevance_logits,
            query_aspect_weights=q_weights,
            item_aspect_weights=i_weights,
            expert_gate_weights=gates,
            domain_adapted_states=x_hat,
        )
        return output if return_dict else output.to_tuple()


def _masked_bce(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    """Mean binary cross-entropy over the rows whose label is not -100 (0 when there is none); None without labels.

    A batch without labels for a task still gives a loss connected to that task's head (0 times its logits), so
    DDP sees a gradient for every parameter on every process.
    """
    if labels is None:
        return None
    keep = labels != IGNORE_LABEL
    targets = labels.clamp(min=0).to(logits.dtype)
    losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * keep.to(logits.dtype)
    return losses.sum() / keep.sum().clamp(min=1)


__all__ = [
    "FoundationModel",
    "FoundationOutput",
    "FoundationPreTrainedModel",
    "js_divergence",
    "js_regularizer",
    "mean_pool",
    "mmd_regularizer",
]
