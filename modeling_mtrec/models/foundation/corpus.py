"""The embedded multi-domain corpus: real news text (or the package's synthetic news), simulated users and labels.

`build_foundation_corpus` writes impression files in the format of `data.py` from the news of a MIND-format
``news.tsv`` given as its ``news_tsv`` argument (e.g. MIND's 2,000-news sample: real titles, entities and categories),
or, without one, from the package's synthetic news (`generate_synthetic_mind`), so that the same call builds the same
corpus on every machine. Users, queries and labels are simulated, so every signal below is planted and known. Nothing
of the news file is copied anywhere but ``output_dir`` (MIND's license: write it outside any repository).

Domains are groups of news categories (greedy, balanced by news count): three source domains and one held-out
cold-start target domain, each with search and recommendation rows. What is planted, and what it should make
measurable:

* **Users shared across domains.** Every user has a latent taste u (unit vector in R^k) used in every domain,
  one fixed history of items drawn by taste from all domains (with their texts in ``history_text``), and the
  same user id everywhere: pretraining on the source domains learns the users (transfer to the target).
* **Item latent v by domain role** (click logit gets γ_d u·v):
  ``text`` domain: v is that of the item's subcategory (a random unit vector per subcategory), which the title's
  topic reveals, so the text places items (the users' histories show which topics they like, across domains); ``id`` domain: v is random per item and a small
  item pool is shown often, so only IDs can place items; ``sparse`` domain: v is that of the item's ``tag=``
  sparse value (10 values), so the sparse aspect places items; ``target`` domain: v as in the ``text`` domain.
  Domain gating should learn these (its aspect weights are reported per domain).
* **Cold items.** The target domain's test rows show items that appear in no training row and no history: only
  their text can place them (next to the texts of the users' history items, a third of which are target items
  seen nowhere else). Its training rows are few.
* **Per-domain shift.** Each domain has its own click base rate b_d, taste strength γ_d, share of mobile rows,
  and its own effect of the ``device=`` context (+, -, or none): the domain-adaptive layer can model it.
* **Popularity** ``pop=low|mid|high`` (same tokens and effect in every domain): a simple transferable signal.
* **Search relevance.** Queries are an item's entity surface forms or its subcategory name; an item is relevant
  when it carries that entity (or that subcategory). Half the search rows show a relevant item. Relevance also
  raises the click logit by ``RELEVANCE_CLICK_EFFECT``.

`TINY` sizes give the fully synthetic corpus the tests use (built from the package's synthetic news).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .data import write_impressions

ROLES = ("text", "id", "sparse")  # the source domains, in order; the target is the fourth group
TARGET_DOMAIN = "target"
SOURCE_FILES = {"train": "source_train.jsonl", "test": "source_test.jsonl"}
TARGET_FILES = {"train": "target_train.jsonl", "test": "target_test.jsonl"}
DOMAIN_SHIFT = {  # role -> (base click logit b_d, taste strength γ_d, P(mobile), effect of device=mobile)
    "text": (-0.4, 5.0, 0.8, 0.6),
    "id": (-0.9, 5.0, 0.5, -0.6),
    "sparse": (-0.6, 5.0, 0.2, 0.0),
    TARGET_DOMAIN: (-0.5, 5.0, 0.6, 0.6),
}
POPULARITY_EFFECT = 0.6  # per step of pop=low/mid/high (-1, 0, +1)
RELEVANCE_CLICK_EFFECT = 1.5  # added to the click logit of a relevant search item, subtracted for an irrelevant one
NUM_TAGS = 10
HISTORY_SHARPNESS = 4.0  # history items are drawn with weight exp(4 u.v): mostly to the user's taste


@dataclass(frozen=True)
class CorpusSizes:
    num_users: int = 400
    latent_dim: int = 4
    source_train_rows: int = 6000  # per source domain
    source_test_rows: int = 1000  # per source domain
    target_train_rows: int = 1000
    target_test_rows: int = 1500
    id_domain_items: int = 120
    history_length: tuple[int, int] = (8, 15)
    search_share: float = 0.5


DEFAULT = CorpusSizes()
TINY = CorpusSizes(
    num_users=100, source_train_rows=1500, source_test_rows=300, target_train_rows=300, target_test_rows=400,
    id_domain_items=30, history_length=(5, 10),
)


def _load_news(news_tsv: str | os.PathLike | None, seed: int) -> tuple[list[dict], str]:
    from modeling_mtrec.data import generate_synthetic_mind, read_news

    if news_tsv is not None:
        table = read_news(news_tsv, lenient=True)
        source = "mind_sample"
    else:
        with tempfile.TemporaryDirectory() as folder:
            paths = generate_synthetic_mind(folder, seed=seed, num_news=1200, num_users=1, num_categories=8,
                                            num_dev_news=0, num_dev_users=0)
            table = read_news(os.path.join(paths["train"], "news.tsv"))
        source = "synthetic"
    columns = ("news_id", "category", "subcategory", "title", "title_entities")
    news = [dict(zip(columns, values, strict=True)) for values in zip(*(table[c] for c in columns), strict=True)]
    for n in news:
        try:
            entities = json.loads(n["title_entities"]) if n["title_entities"].strip() else []
        except json.JSONDecodeError:
            entities = []
        forms = [f for e in entities if isinstance(e, dict) for f in e.get("SurfaceForms", []) if isinstance(f, str)]
        n["entities"] = sorted({f.strip() for f in forms if len(f.strip()) > 2})
        n["subcategory_name"] = _subcategory_name(n["category"], n["subcategory"])
    return [n for n in news if n["title"].strip()], source


def _subcategory_name(category: str, subcategory: str) -> str:
    """A readable query from a subcategory id: category prefix dropped, separators to spaces (``newspolitics`` ->
    ``politics``, ``football_nfl`` -> ``football nfl``)."""
    name = subcategory[len(category):] if subcategory.startswith(category) and subcategory != category else subcategory
    return re.sub(r"[_\-]+", " ", name).strip() or subcategory


def _group_categories(news: list[dict], groups: int) -> list[list[str]]:
    """Categories into `groups` groups balanced by news count (largest first, each to the smallest group)."""
    counts: dict[str, int] = {}
    for n in news:
        counts[n["category"]] = counts.get(n["category"], 0) + 1
    bins: list[list[str]] = [[] for _ in range(groups)]
    sizes = [0] * groups
    for category in sorted(counts, key=lambda c: (-counts[c], c)):
        smallest = min(range(groups), key=lambda g: (sizes[g], g))
        bins[smallest].append(category)
        sizes[smallest] += counts[category]
    return bins


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic, equal scores ranked in input order (the rule of
    `modeling_mtrec.evaluation.metrics.auc_score`, which a model folder may not import); NaN without both labels."""
    labels, scores = np.asarray(labels, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    positive = labels == 1
    num_positive = int(positive.sum())
    num_negative = labels.size - num_positive
    if num_positive == 0 or num_negative == 0:
        return math.nan
    ranks = np.empty(labels.size, dtype=np.float64)  # ascending ranks: the best score gets n, ties in input order
    ranks[np.argsort(-scores, kind="stable")] = np.arange(labels.size, 0, -1, dtype=np.float64)
    return (float(ranks[positive].sum()) - num_positive * (num_positive + 1) / 2.0) / (num_positive * num_negative)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class _Simulator:
    def __init__(self, news: list[dict], sizes: CorpusSizes, seed: int):
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.sizes, self.seed = sizes, seed
        k = sizes.latent_dim
        groups = _group_categories(news, len(ROLES) + 1)
        self.domain_categories = dict(zip((*ROLES, TARGET_DOMAIN), groups, strict=True))
        by_domain = {d: [n for n in news if n["category"] in cats] for d, cats in self.domain_categories.items()}
        tags = [_unit(self.np_rng.standard_normal(k)) for _ in range(NUM_TAGS)]
        subcategories = sorted({n["subcategory"] for n in news})
        topic = {s: _unit(self.np_rng.standard_normal(k)) for s in subcategories}
        self.items: dict[str, dict] = {}
        for domain, pool in by_domain.items():
            if domain == "id" and len(pool) > sizes.id_domain_items:
                pool = self.rng.sample(pool, sizes.id_domain_items)
            for n in pool:
                item = {"id": n["news_id"], "text": n["title"], "domain": domain, "entities": n["entities"],
                        "subcategory": n["subcategory"], "subcategory_name": n["subcategory_name"],
                        "pop": self.rng.choice((-1, 0, 1)), "tag": None}
                if domain == "id":
                    item["latent"] = _unit(self.np_rng.standard_normal(k))
                elif domain == "sparse":
                    item["tag"] = self.rng.randrange(NUM_TAGS)
                    item["latent"] = tags[item["tag"]]
                else:  # text and target domains: the subcategory's latent, which the title's topic reveals
                    item["latent"] = topic[n["subcategory"]]
                self.items[item["id"]] = item
        self.pools = {d: [i for i in self.items.values() if i["domain"] == d] for d in by_domain}
        # Target items: a third only ever in histories, a few in training rows, the rest only in test rows.
        target = self.pools[TARGET_DOMAIN][:]
        self.rng.shuffle(target)
        third = len(target) // 3
        self.target_history, self.target_train, self.target_test = target[:third], target[third : 2 * third], target[2 * third :]
        history_pool = [i for d in ROLES for i in self.pools[d]] + self.target_history
        self.users = []
        for u in range(sizes.num_users):
            taste = _unit(self.np_rng.standard_normal(k))
            weights = np.array([math.exp(HISTORY_SHARPNESS * float(taste @ i["latent"])) for i in history_pool])
            length = self.rng.randint(*sizes.history_length)
            picked = self.np_rng.choice(len(history_pool), size=length, replace=False, p=weights / weights.sum())
            self.users.append({"id": f"U{u}", "taste": taste, "age": self.rng.randrange(5),
                               "history": [history_pool[j] for j in picked]})

    def _query(self, item: dict) -> tuple[str, str]:
        """(kind, text) of a query made from `item`: one of its entities, or its subcategory name."""
        if item["entities"] and self.rng.random() < 0.7:
            return "entity", self.rng.choice(item["entities"])
        return "subcategory", item["subcategory_name"]

    @staticmethod
    def _matches(item: dict, kind: str, text: str) -> bool:
        if kind == "entity":
            return text in item["entities"] or text.lower() in item["text"].lower()
        return item["subcategory_name"] == text

    def row(self, domain: str, pool: list[dict]) -> dict:
        rng = self.rng
        user = rng.choice(self.users)
        base, strength, mobile_share, mobile_effect = DOMAIN_SHIFT[domain]
        mobile = rng.random() < mobile_share
        row = {"domain": domain, "user_id": user["id"],
               "user_sparse": [f"age={user['age']}", f"device={'mobile' if mobile else 'desktop'}"],
               "history": [h["id"] for h in user["history"]], "history_text": [h["text"] for h in user["history"]]}
        relevance = -100
        if rng.random() < self.sizes.search_share:
            source = rng.choice(pool)
            kind, query = self._query(source)
            relevant = [i for i in pool if self._matches(i, kind, query)]
            others = [i for i in pool if not self._matches(i, kind, query)]
            relevance = 1 if (rng.random() < 0.5 or not others) else 0
            item = rng.choice(relevant if relevance == 1 else others)
            row.update(scenario="search", query_id=f"q:{query.lower()}", query_text=query)
        else:
            item = rng.choice(pool)
            row.update(scenario="recommendation", query_id="", query_text="")
        logit = base + strength * float(user["taste"] @ item["latent"]) + POPULARITY_EFFECT * item["pop"]
        logit += mobile_effect * (1 if mobile else -1)
        if relevance != -100:
            logit += RELEVANCE_CLICK_EFFECT * (1 if relevance else -1)
        sparse = [f"pop={('low', 'mid', 'high')[item['pop'] + 1]}"]
        if item["tag"] is not None:
            sparse.append(f"tag={item['tag']}")
        probability = _sigmoid(logit)
        row.update(item_id=item["id"], item_text=item["text"], item_sparse=sparse,
                   click=int(rng.random() < probability), relevance=relevance)
        return row, probability


def build_foundation_corpus(
    output_dir: str | os.PathLike,
    *,
    news_tsv: str | os.PathLike | None = None,
    seed: int = 0,
    sizes: CorpusSizes = DEFAULT,
) -> dict[str, str]:
    """Write ``source_{train,test}.jsonl``, ``target_{train,test}.jsonl`` and ``corpus.json`` into `output_dir`.

    Args:
        news_tsv: a MIND-format news.tsv whose news the corpus is built from (read leniently: malformed rows are
            skipped and counted), or None for the package's synthetic news.
        seed: the only source of randomness (with the news file): the same seed gives identical files.
        sizes: `DEFAULT` (the benchmark's corpus) or `TINY` (tests).

    Returns:
        ``{"source_train", "source_test", "target_train", "target_test", "info"}`` -> paths.
    """
    news, source = _load_news(news_tsv, seed)
    sim = _Simulator(news, sizes, seed)
    output_dir = Path(output_dir)
    plan = {
        SOURCE_FILES["train"]: [(d, sim.pools[d], sizes.source_train_rows) for d in ROLES],
        SOURCE_FILES["test"]: [(d, sim.pools[d], sizes.source_test_rows) for d in ROLES],
        TARGET_FILES["train"]: [(TARGET_DOMAIN, sim.target_train, sizes.target_train_rows)],
        TARGET_FILES["test"]: [(TARGET_DOMAIN, sim.target_test, sizes.target_test_rows)],
    }
    paths: dict[str, str] = {}
    oracle: dict[str, float] = {}
    for name, parts in plan.items():
        drawn = [(domain, *sim.row(domain, pool)) for domain, pool, count in parts for _ in range(count)]
        sim.rng.shuffle(drawn)  # so that the first n rows of a file are a random subset of it
        paths[name.removesuffix(".jsonl")] = str(write_impressions([row for _, row, _ in drawn], output_dir / name))
        if name.endswith("test.jsonl"):
            for domain in dict.fromkeys(d for d, _, _ in drawn):
                clicks = np.array([row["click"] for d, row, _ in drawn if d == domain])
                probability = np.array([p for d, _, p in drawn if d == domain])
                oracle[domain] = round(_auc(clicks, probability), 4)
    info = {
        "news": source,
        "news_file": str(news_tsv) if news_tsv is not None else None,
        "seed": seed,
        "sizes": asdict(sizes),
        "source_domains": list(ROLES),
        "target_domain": TARGET_DOMAIN,
        "domain_categories": sim.domain_categories,
        "items_per_domain": {d: len(p) for d, p in sim.pools.items()},
        "target_items": {"history_only": len(sim.target_history), "train": len(sim.target_train),
                         "test_only": len(sim.target_test)},
        "domain_shift": {d: dict(zip(("base_logit", "taste_strength", "mobile_share", "mobile_effect"), v, strict=True))
                         for d, v in DOMAIN_SHIFT.items()},
        # CTR AUC of the planted click probabilities on the test rows: the ceiling a model can reach there.
        "oracle_test_ctr_auc": oracle,
        "popularity_effect": POPULARITY_EFFECT,
        "relevance_click_effect": RELEVANCE_CLICK_EFFECT,
    }
    info_path = output_dir / "corpus.json"
    info_path.write_text(json.dumps(info, indent=2), encoding="utf-8")
    paths["info"] = str(info_path)
    return paths


__all__ = ["DEFAULT", "TINY", "CorpusSizes", "build_foundation_corpus"]
