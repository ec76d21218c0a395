"""Configuration of the multi-domain search-and-recommendation foundation model.

Paper: Gong et al., "An Unified Search and Recommendation Foundation Model for Cold-Start Scenario", CIKM 2023
(arXiv:2309.08939, Ant Group). The paper's text was not reachable offline; what its summaries give is cited below
by the part of the paper it belongs to (encoding, aspect gating fusion, domain-adaptive multi-task learning,
supervised fine-tuning). Everything marked "guessed" is not reported there (private Alipay data; the MMoE sizes,
the minibatch JS estimator and the loss weights are not given) and was chosen for corpora of tens of thousands of
rows on a CPU; every such value is configurable.
"""

from __future__ import annotations

from transformers import BertConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

ASPECTS: tuple[str, ...] = ("id", "text", "sparse")  # the order of every aspect-weight tensor
GATING_STRATEGIES = ("mean", "cls", "domain")
MTL_MODULES = ("mmoe", "ple", "shared_bottom")
REGULARIZERS = ("none", "js", "mmd")
JS_ESTIMATORS = ("histogram", "softmax")
TASKS: tuple[str, ...] = ("ctr", "relevance")  # the order of the tasks in the expert-gate tensor
FREEZE_SPLITS = ("none", "L0", "L0+L1")


class FoundationConfig(PreTrainedConfig):
    r"""
    Configuration of a [`FoundationModel`]: ID, sparse and text aspects for user, query and item (L0 embeddings,
    L1 encoders), aspect gating fusion, a domain-adaptive layer, a multi-task module (MMoE, PLE or shared-bottom)
    with a click-through (CTR) and a query-item relevance tower, and a regulariser that pulls the domains'
    distributions of the domain-adapted representation together.

    Args:
        domains (`list[str]`, *optional*, defaults to `["default"]`):
            Domain names; a row's `domain_ids` value indexes this list. [`FoundationModel.add_domain`] appends one.
        embedding_dim (`int`, *optional*, defaults to 64):
            d, the common width of every aspect vector and of the user, query and item vectors (encoding: "IDs and
            sparse features are mapped to the same width"; size guessed).
        id_embedding_dim (`int`, *optional*, defaults to 64):
            Width of the ID embedding tables before their linear map to `embedding_dim` (guessed).
        user_id_buckets (`int`, *optional*, defaults to 100003):
            Hash buckets of the user-id table; bucket 0 is "no id" (hashing trick; size guessed).
        item_id_buckets (`int`, *optional*, defaults to 100003):
            Hash buckets of the item-id table, shared by the item and the user's history (guessed).
        query_id_buckets (`int`, *optional*, defaults to 100003):
            Hash buckets of the query-id table (guessed).
        sparse_buckets (`int`, *optional*, defaults to 100003):
            Hash buckets of each side's sparse (categorical) feature table; bucket 0 is padding (guessed).
        sparse_hidden_sizes (`list[int]`, *optional*, defaults to `[64]`):
            Hidden layers of the MLP that maps the mean of a side's sparse embeddings to `embedding_dim`
            (encoding: "MLP for sparse"; widths guessed).
        text_embed_dim (`int`, *optional*, defaults to 384):
            Width of the language model's mean-pooled vectors (all-MiniLM-L6-v2: 384); 0 removes the text aspect.
        text_encoder_config (`BertConfig` or `dict`, *optional*):
            When set, the model holds the language model (`embeddings.text_model`) and encodes the texts itself, so
            the LM can be fine-tuned end to end (for users with GPUs). When `None` (the paper's set-up: the LM is
            frozen), the model takes precomputed mean-pooled vectors (`text_embeds`) and only `W_lm` trains.
        encoder_name_or_path (`str`, *optional*):
            The checkpoint of the language model; recorded for the model card and the text-feature cache.
        aspects (`list[str]`, *optional*, defaults to `["id", "text", "sparse"]`):
            Aspects fused for queries and items (aspect gating fusion: ID, text, sparse). Leaving one out removes
            its tables; the aspect-weight tensors keep all three columns (the missing one is always 0).
        gating (`str`, *optional*, defaults to `"domain"`):
            Aspect gating fusion: `"mean"` (w_a = 1/3), `"cls"` (w_a = softmax_a(E_CLS . E_a)) or `"domain"`
            (w_a = softmax_a(E_Dk . E_a), one learned embedding per domain). The paper reports domain gating best
            (+0.0139 AUC over mean gating).
        user_encoder_layers (`int`, *optional*, defaults to 1):
            Transformer layers over [user token, history items] (encoding: "embeddings + a transformer layer").
        user_encoder_heads (`int`, *optional*, defaults to 2):
            Attention heads of those layers (guessed); must divide `embedding_dim`.
        interaction_features (`bool`, *optional*, defaults to `False`):
            Append user ⊙ item and query ⊙ item to x = user ⊕ query ⊕ item before the domain-adaptive layer. The
            paper concatenates the three vectors only (the default); see the NOTE of `modeling_foundation`.
        use_domain_adaptive (`bool`, *optional*, defaults to `True`):
            x̂ = W(x ⊕ E_D) (domain-adaptive layer). When `False`, x̂ = W x: the same layer without the domain.
        domain_embedding_dim (`int`, *optional*, defaults to 16):
            Width of E_D in the domain-adaptive layer (guessed).
        domain_adaptive_dim (`int`, *optional*, defaults to 128):
            Width of x̂ (guessed).
        mtl_module (`str`, *optional*, defaults to `"mmoe"`):
            Multi-task module: `"mmoe"` (the paper's default), `"ple"` or `"shared_bottom"`.
        num_experts (`int`, *optional*, defaults to 4):
            MMoE experts (guessed; torch-rechub's examples use 3-8).
        expert_hidden_sizes (`list[int]`, *optional*, defaults to `[128, 64]`):
            Layers of each expert MLP, and of the shared bottom (guessed).
        ple_num_task_experts (`int`, *optional*, defaults to 2):
            PLE task-specific experts per task and level (guessed).
        ple_num_shared_experts (`int`, *optional*, defaults to 2):
            PLE shared experts per level (guessed).
        ple_num_levels (`int`, *optional*, defaults to 2):
            PLE extraction layers (guessed; the PLE paper stacks 2).
        tower_hidden_sizes (`list[int]`, *optional*, defaults to `[32]`):
            Hidden layers of the CTR and relevance towers (guessed).
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout after every hidden layer of the MLPs and in the user encoder (guessed: the small corpora here
            train best without it).
        regularizer (`str`, *optional*, defaults to `"js"`):
            Domain-alignment regulariser on x̂: `"js"` (the paper's: the sum over domain pairs of
            JS(p(x̂_i) ‖ p(x̂_j))), `"mmd"` (the alternative it compares) or `"none"`.
        js_estimator (`str`, *optional*, defaults to `"histogram"`):
            Minibatch JS estimator (not given in the paper; see the NOTE of `modeling_foundation`):
            `"histogram"` (JS of soft histograms of each standardised coordinate, averaged over coordinates) or
            `"softmax"` (JS of the domains' mean softmax(x̂) over coordinates).
        js_num_bins (`int`, *optional*, defaults to 16):
            Bins of the soft histograms, spread evenly over [-3, 3] standard deviations (guessed).
        mmd_bandwidths (`list[float]`, *optional*, defaults to `[0.5, 1.0, 2.0]`):
            Relative bandwidths s of the MMD's Gaussian kernels k(x, y) = mean_s exp(-|x - y|² / (2 s² D)) on
            standardised x̂ of width D (guessed: a multi-scale kernel, as in DAN-style domain adaptation).
        ctr_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of L_ctr (the paper sums the losses: loss = L_ctr + L_relevance + L_reg).
        relevance_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of L_relevance.
        regularizer_weight (`float`, *optional*, defaults to 0.1):
            Weight of L_reg (guessed: the paper's weight is not given; 0.1 keeps the regulariser, which sums over
            domain pairs, from dominating the two task losses early in training).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialiser of embeddings and linear layers.
    """

    model_type = "mtrec_foundation"
    sub_configs_defaults = {"text_encoder_config": SubConfigSpec(config_class=BertConfig, optional=True)}
    keys_to_ignore_at_inference = [
        "ctr_loss", "relevance_loss", "regularizer_loss", "query_aspect_weights", "item_aspect_weights",
        "expert_gate_weights", "domain_adapted_states",
    ]

    domains: list[str] | None = None
    embedding_dim: int = 64
    id_embedding_dim: int = 64
    user_id_buckets: int = 100_003
    item_id_buckets: int = 100_003
    query_id_buckets: int = 100_003
    sparse_buckets: int = 100_003
    sparse_hidden_sizes: list[int] | None = None
    text_embed_dim: int = 384
    text_encoder_config: dict | BertConfig | None = None
    encoder_name_or_path: str | None = None
    aspects: list[str] | None = None
    gating: str = "domain"
    user_encoder_layers: int = 1
    user_encoder_heads: int = 2
    interaction_features: bool = False
    use_domain_adaptive: bool = True
    domain_embedding_dim: int = 16
    domain_adaptive_dim: int = 128
    mtl_module: str = "mmoe"
    num_experts: int = 4
    expert_hidden_sizes: list[int] | None = None
    ple_num_task_experts: int = 2
    ple_num_shared_experts: int = 2
    ple_num_levels: int = 2
    tower_hidden_sizes: list[int] | None = None
    dropout: float = 0.0
    regularizer: str = "js"
    js_estimator: str = "histogram"
    js_num_bins: int = 16
    mmd_bandwidths: list[float] | None = None
    ctr_loss_weight: float = 1.0
    relevance_loss_weight: float = 1.0
    regularizer_weight: float = 0.1
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.domains = list(self.domains) if self.domains else ["default"]
        self.aspects = list(self.aspects) if self.aspects is not None else list(ASPECTS)
        self.sparse_hidden_sizes = [int(h) for h in (self.sparse_hidden_sizes if self.sparse_hidden_sizes is not None else [64])]
        self.expert_hidden_sizes = [int(h) for h in (self.expert_hidden_sizes or [128, 64])]
        self.tower_hidden_sizes = [int(h) for h in (self.tower_hidden_sizes if self.tower_hidden_sizes is not None else [32])]
        self.mmd_bandwidths = [float(s) for s in (self.mmd_bandwidths or [0.5, 1.0, 2.0])]
        if len(set(self.domains)) != len(self.domains) or not all(isinstance(d, str) and d for d in self.domains):
            raise ValueError(f"`domains` must be distinct non-empty strings, got {self.domains}")
        for name in (
            "embedding_dim", "id_embedding_dim", "user_id_buckets", "item_id_buckets", "query_id_buckets",
            "sparse_buckets", "user_encoder_layers", "user_encoder_heads", "domain_embedding_dim",
            "domain_adaptive_dim", "num_experts", "ple_num_task_experts", "ple_num_shared_experts", "ple_num_levels",
            "js_num_bins",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        for name in ("user_id_buckets", "item_id_buckets", "query_id_buckets", "sparse_buckets"):
            if getattr(self, name) < 2:
                raise ValueError(f"`{name}` needs bucket 0 (no id / padding) and at least one more, got {getattr(self, name)}")
        if not isinstance(self.text_embed_dim, int) or self.text_embed_dim < 0:
            raise ValueError(f"`text_embed_dim` must be a non-negative integer (0 = no text), got {self.text_embed_dim!r}")
        for name in ("sparse_hidden_sizes", "expert_hidden_sizes", "tower_hidden_sizes"):
            if any(h < 1 for h in getattr(self, name)):
                raise ValueError(f"`{name}` must hold positive widths, got {getattr(self, name)}")
        if not self.expert_hidden_sizes:
            raise ValueError("`expert_hidden_sizes` needs at least one layer (the experts' output width)")
        unknown = [a for a in self.aspects if a not in ASPECTS]
        if unknown or not self.aspects or len(set(self.aspects)) != len(self.aspects):
            raise ValueError(f"`aspects` must be distinct values among {ASPECTS}, got {self.aspects}")
        if "text" in self.aspects and self.text_embed_dim == 0:
            raise ValueError("the text aspect needs `text_embed_dim` > 0 (or leave 'text' out of `aspects`)")
        for name, allowed in (
            ("gating", GATING_STRATEGIES), ("mtl_module", MTL_MODULES), ("regularizer", REGULARIZERS),
            ("js_estimator", JS_ESTIMATORS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(self, name)!r}")
        if self.embedding_dim % self.user_encoder_heads:
            raise ValueError(
                f"`user_encoder_heads`={self.user_encoder_heads} must divide `embedding_dim`={self.embedding_dim}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {self.dropout}")
        if any(s <= 0 for s in self.mmd_bandwidths):
            raise ValueError(f"`mmd_bandwidths` must be positive, got {self.mmd_bandwidths}")
        for name in ("ctr_loss_weight", "relevance_loss_weight", "regularizer_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        super().__post_init__(**kwargs)
        if self.text_encoder_config is not None and self.text_encoder_config.hidden_size != self.text_embed_dim:
            raise ValueError(
                f"`text_embed_dim`={self.text_embed_dim} must equal the language model's hidden_size="
                f"{self.text_encoder_config.hidden_size}"
            )

    @property
    def num_domains(self) -> int:
        return len(self.domains)

    @property
    def domain2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.domains)}


__all__ = [
    "ASPECTS", "FREEZE_SPLITS", "FoundationConfig", "GATING_STRATEGIES", "JS_ESTIMATORS", "MTL_MODULES",
    "REGULARIZERS", "TASKS",
]
