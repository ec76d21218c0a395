"""A Gradio demo of a trained MTRec (and, optionally, retrieve-then-rank with a two-tower retriever).

    python train_mtrec.py --output_dir outputs/mtrec          # the main job (README), or any saved MTRec folder
    python demo/app.py --model outputs/mtrec                  # then open http://127.0.0.1:7860

Tab "Rank": pick a dev user (their clicked titles and the impression's candidates) or type titles, one per line;
the page shows the candidates ranked with MTRec's scores and the clicks that weighed most in the user vector (the
user encoder's additive attention, `pipeline("news-recommendation")`'s ``history`` weights).
Tab "Retrieve then rank" (with ``--two_tower outputs/two-tower``, `train_two_tower.py`'s output): the two-tower
retriever finds the top k news of the whole news table for a user's clicks, MTRec re-ranks them.

Dev users come from ``--dev_dir`` (a MIND-format folder), by default the synthetic corpus the recipe wrote into the
model folder (``synthetic_mind/dev``). Nothing is sent anywhere: Gradio's analytics are off.
"""

from __future__ import annotations

import os

# Before gradio is imported: no usage statistics, no update check, no Hub telemetry.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import html  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

MAX_TITLE_CHARS = 500  # MIND's longest title has ~100 characters; BERT reads max_title_length tokens anyway
MAX_ENTRIES = 300  # per box: a page of candidates, not a corpus
MAX_DEV_USERS = 200  # impressions offered in the dropdown


class InputError(ValueError):
    """Bad input, shown on the page as a message."""


@dataclass
class DevUsers:
    """Impressions of a MIND-format dev folder: the dropdown's labels -> (history titles, candidate titles, ids)."""

    titles: dict[str, str] = field(default_factory=dict)  # news id -> title
    impressions: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # label -> (history, cands)

    @classmethod
    def read(cls, folder: str | os.PathLike | None, limit: int = MAX_DEV_USERS) -> DevUsers:
        if folder is None or not Path(folder).is_dir():
            return cls()
        from modeling_mtrec.data.mind import read_behaviors, read_news, split_files

        news_path, behaviors_path = split_files(folder)
        news = read_news(news_path, lenient=True)
        titles = dict(zip(news["news_id"], news["title"]))
        users = cls(titles)
        for row in read_behaviors(behaviors_path, lenient=True).select_columns(
            ["impression_id", "user_id", "history", "candidates"]
        ):
            history = [n for n in row["history"] if n in titles]
            candidates = [n for n in row["candidates"] if n in titles]
            if history and candidates:
                label = f"{row['user_id']} · impression {row['impression_id']} ({len(history)} clicks, {len(candidates)} candidates)"
                users.impressions[label] = (history, candidates)
            if len(users.impressions) >= limit:
                break
        return users


def parse_titles(text: str | None, what: str) -> list[str]:
    """One entry per non-empty line; `InputError` for too many or too long entries."""
    entries = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if len(entries) > MAX_ENTRIES:
        raise InputError(f"{what}: {len(entries):,} lines; at most {MAX_ENTRIES} are ranked here")
    for number, entry in enumerate(entries, 1):
        if len(entry) > MAX_TITLE_CHARS:
            raise InputError(
                f"{what}, line {number}: {len(entry):,} characters; a title has at most {MAX_TITLE_CHARS} here "
                "(a news title, not an article)"
            )
    return entries


def _bar(value: float, largest: float) -> str:
    width = 0 if largest <= 0 else max(0.0, value / largest) * 100
    return f'<span style="display:inline-block;height:0.7em;width:{width:.0f}px;background:#f97316"></span>'


def ranking_html(output: dict) -> str:
    """The ranked candidates as an ordered list (the browser test reads ``#ranking-list li``)."""
    rows = "".join(
        f'<li data-position="{r["position"]}" data-score="{r["score"]!r}"><span class="title">'
        f'{html.escape(r["candidate"])}</span> <code>{r["score"]:.4f}</code></li>'
        for r in output["ranking"]
    )
    return f'<ol id="ranking-list">{rows}</ol>'


def weights_html(output: dict, top: int = 5) -> str:
    """The clicks that weighed most in the user vector, largest attention weight first."""
    history = [h for h in output["history"] if h["weight"] is not None]
    if not history:
        return "<p>No attention weights (the model folder predates them).</p>"
    ranked = sorted(history, key=lambda h: -h["weight"])[:top]
    largest = ranked[0]["weight"]
    rows = "".join(
        f'<li data-weight="{h["weight"]!r}">{_bar(h["weight"], largest)} <code>{h["weight"]:.3f}</code> '
        f'{html.escape(h["item"])}</li>'
        for h in ranked
    )
    return f'<ol id="weights-list">{rows}</ol>'


class App:
    """The models and the dev users behind the page; every handler returns a message instead of raising."""

    def __init__(self, model: str, dev_dir: str | None = None, two_tower: str | None = None):
        from transformers import AutoTokenizer

        from modeling_mtrec import MTRecModel, NewsRecommendationPipeline

        self.model = MTRecModel.from_pretrained(model).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.pipe = NewsRecommendationPipeline(model=self.model, tokenizer=self.tokenizer, device="cpu")
        default_dev = Path(model) / "synthetic_mind" / "dev"
        self.dev = DevUsers.read(dev_dir or (default_dev if default_dev.is_dir() else None))
        self.retriever = Retriever(two_tower, self.model, self.tokenizer) if two_tower else None

    def pick_user(self, label: str | None) -> tuple[str, str]:
        if not label or label not in self.dev.impressions:
            return "", ""
        history, candidates = self.dev.impressions[label]
        return "\n".join(self.dev.titles[n] for n in history), "\n".join(self.dev.titles[n] for n in candidates)

    def rank(self, history_text: str, candidates_text: str) -> tuple[str, str, str]:
        """(message, ranking HTML, weights HTML)."""
        try:
            history = parse_titles(history_text, "Clicked titles")
            candidates = parse_titles(candidates_text, "Candidates")
            if not history:
                raise InputError("Clicked titles: enter at least one title the user clicked (one per line)")
            if not candidates:
                raise InputError("Candidates: enter at least one title to rank (one per line)")
            output = self.pipe({"history": history, "candidates": candidates})
        except (InputError, ValueError, KeyError) as error:
            return f"**Cannot rank:** {html.escape(str(error))}", "", ""
        except Exception as error:  # never a traceback on the page
            return f"**Something went wrong:** {type(error).__name__}: {html.escape(str(error))}", "", ""
        kept = self.model.config.max_history_length
        note = f" Only the {kept} most recent clicks count (the model's history length)." if len(history) > kept else ""
        message = f"Ranked {len(candidates)} candidates for a user with {len(history)} clicks.{note}"
        return message, ranking_html(output), weights_html(output)

    def retrieve(self, ids_text: str, k: float, top_n: float) -> tuple[str, str]:
        if self.retriever is None:
            return "**No retriever:** start the demo with `--two_tower FOLDER` (train_two_tower.py's output)", ""
        try:
            return self.retriever.retrieve(parse_titles(ids_text, "Clicked news ids"), int(k), int(top_n))
        except (InputError, ValueError, KeyError) as error:
            return f"**Cannot retrieve:** {html.escape(str(error).strip(chr(39)))}", ""
        except Exception as error:  # never a traceback on the page
            return f"**Something went wrong:** {type(error).__name__}: {html.escape(str(error))}", ""


class Retriever:
    """Retrieve-then-rank over a two-tower folder's whole news table (`serving.retrieval.retrieve_then_rank`)."""

    def __init__(self, folder: str, mtrec, tokenizer, data_dir: str | None = None):
        import json

        import faiss

        from modeling_mtrec import TwoTowerModel
        from modeling_mtrec.models.mtrec.processing_mtrec import tokenize_titles
        from modeling_mtrec.models.two_tower.corpus import load_retrieval_corpus

        folder = Path(folder)
        self.model = TwoTowerModel.from_pretrained(folder).eval()
        if self.model.config.text_embed_dim:
            raise SystemExit(f"{folder}: a two-tower with title embeddings (--text_encoder) is not supported here")
        data = Path(data_dir) if data_dir else folder / "synthetic_mind"
        corpus = load_retrieval_corpus(train_dir=data / "train", eval_dir=data / "dev", lenient=True)
        if json.loads((folder / "news_ids.json").read_text()) != list(corpus.news_index):
            raise SystemExit(f"{folder}: news_ids.json does not match the news of {data}")
        self.index, self.items, self.news, self.news_index = (
            faiss.read_index(str(folder / "items.faiss")), corpus.items, corpus.news, corpus.news_index,
        )
        self.mtrec, self.pad = mtrec, tokenizer.pad_token_id
        self.titles = tokenize_titles(tokenizer, self.news["title"], mtrec.config.max_title_length)["input_ids"]

    def retrieve(self, ids: list[str], k: int, top_n: int) -> tuple[str, str]:
        from modeling_mtrec.data.samples import stable_key
        from modeling_mtrec.serving.retrieval import retrieve_then_rank

        if not ids:
            raise InputError("Clicked news ids: enter at least one news id (one per line)")
        unknown = [i for i in ids if i not in self.news_index]
        if unknown:
            raise InputError(f"unknown news id(s): {', '.join(unknown[:5])} (the news table has {len(self.news_index):,})")
        history = [self.news_index[i] for i in ids][-self.mtrec.config.max_history_length :]
        ranked = retrieve_then_rank(
            stable_key("demo-user"), history, self.model, self.index, self.items, self.mtrec, self.titles,
            k=k, top_n=top_n, pad_token_id=self.pad,
        )
        rows = "".join(
            f'<li><span class="title">{html.escape(self.news[r.row]["title"])}</span> '
            f"<code>{self.news[r.row]['news_id']}</code> retrieval {r.retrieval_score:.3f} · MTRec {r.rank_score:.3f}</li>"
            for r in ranked
        )
        return f"Retrieved {k} of {len(self.news_index):,} news, re-ranked by MTRec; the best {len(ranked)}:", (
            f'<ol id="retrieved-list">{rows}</ol>'
        )


def build_demo(app: App):
    import gradio as gr

    users = list(app.dev.impressions)
    with gr.Blocks(title="MTRec news recommendation") as demo:
        gr.Markdown(
            "# MTRec news recommendation\nRanks candidate news for a user from the titles they clicked "
            "(MTRec, Bi et al., Findings of ACL 2022). One title per line."
        )
        with gr.Tab("Rank"):
            user = gr.Dropdown(users, label="Dev user (fills both boxes)", value=None, elem_id="dev-user",
                               visible=bool(users))
            with gr.Row():
                history = gr.Textbox(lines=8, label="Clicked titles (oldest first)", elem_id="history")
                candidates = gr.Textbox(lines=8, label="Candidates", elem_id="candidates")
            submit = gr.Button("Rank", variant="primary", elem_id="rank")
            message = gr.Markdown(elem_id="message")
            with gr.Row():
                with gr.Column():
                    gr.Markdown("### Ranking (best first, MTRec's click score)")
                    ranking = gr.HTML(elem_id="ranking")
                with gr.Column():
                    gr.Markdown("### Clicks that weighed most (user-encoder attention)")
                    weights = gr.HTML(elem_id="weights")
            user.change(app.pick_user, user, [history, candidates])
            submit.click(app.rank, [history, candidates], [message, ranking, weights])
        with gr.Tab("Retrieve then rank"):
            gr.Markdown(
                "The two-tower retriever finds the top k of the whole news table for the clicked news; MTRec "
                "re-ranks them." if app.retriever else "Start the demo with `--two_tower FOLDER` to use this tab."
            )
            ids = gr.Textbox(lines=5, label="Clicked news ids (oldest first)", elem_id="clicked-ids")
            with gr.Row():
                k = gr.Slider(1, 200, value=50, step=1, label="k (retrieved)")
                top_n = gr.Slider(1, 50, value=10, step=1, label="shown")
            go = gr.Button("Retrieve and rank", variant="primary", elem_id="retrieve")
            retrieve_message = gr.Markdown(elem_id="retrieve-message")
            retrieved = gr.HTML(elem_id="retrieved")
            go.click(app.retrieve, [ids, k, top_n], [retrieve_message, retrieved])
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="outputs/mtrec", help="a saved MTRec folder (train_mtrec.py's output)")
    parser.add_argument("--dev_dir", default=None, help="MIND-format folder whose users fill the dropdown")
    parser.add_argument("--two_tower", default=None, help="a two-tower folder (train_two_tower.py's output)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    for flag, folder in (("--model", args.model), ("--two_tower", args.two_tower)):
        if folder is not None and not (Path(folder) / "config.json").is_file():
            sys.exit(
                f"{flag} {folder}: no saved model there (no config.json). Train one first, e.g. "
                f"`python train_mtrec.py --output_dir outputs/mtrec`, or pass the folder you saved."
            )
    demo = build_demo(App(args.model, dev_dir=args.dev_dir, two_tower=args.two_tower))
    demo.launch(server_name=args.host, server_port=args.port, show_error=False)


if __name__ == "__main__":
    main()
