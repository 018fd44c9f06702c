"""Decoder pruning: weight-sharing NAS against layer dropping and Taylor importance on SmolLM2-135M and Shakespeare.

Every method prunes the same pre-trained causal LM to about 75 / 50 / 25 % of its layer parameters and is reported as
test perplexity (Macbeth, blocks of --max-seq-length tokens), with each point's exported model timed for generation
(tokens/s, batch 1, greedy with the KV cache, --new-tokens after a --prompt-tokens prompt) and prefill latency (one
forward of --max-seq-length tokens, batch 1), and the cost split into fine-tuning and search/pruning seconds.

Methods:
  nas                    super-network fine-tuning (--strategy, --steps steps of --batch-size blocks) and a search of
                         --num-trials sub-networks (--searcher) on validation perplexity; per budget the best validation
                         pick within it
  layer_drop_bi          ShortGPT: drop the layers of lowest block influence (cosine of a layer's input and output hidden
                         states on --num-samples training blocks), no retraining
  layer_drop_top         drop the top layers, no retraining
  layer_drop_top_ft      drop the top layers, then fine-tune what is kept for --retrain-epochs epochs on the same training
                         blocks as the super-network (Sajjad et al.); one fine-tuning per budget
  importance             LLM-Pruner's first-order Taylor scores of heads (whole key/value groups, GQA-valid) and FFN
                         channels on --num-samples training blocks, global mask search per budget, no retraining

Every unit of work (the unpruned model, the super-network, the search, each baseline, each point's export and timing)
is recorded in --work/state.json when done and the results are rewritten after it, so a stopped run continues with
--resume. Results: benchmarks/results/decoder_pruning{_TAG}.{csv,json,md,png}, with the command that produced them.

    python benchmarks/decoder_pruning.py                          # the default run, sized for ~35 min on 2 idle cores
    python benchmarks/decoder_pruning.py --smoke --work /tmp/dp   # a tiny random LLaMA, every code path in a few minutes
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nas_tune.errors import UserError

RESULTS = Path(__file__).parent / "results"
METHODS = ["nas", "layer_drop_bi", "layer_drop_top", "layer_drop_top_ft", "importance"]
BASELINE_RUNS = {  # method -> (baseline name, BaselineSettings overrides)
    "layer_drop_bi": ("layer_drop", {"layer_choice": "block_influence", "epochs": 0}),
    "layer_drop_top": ("layer_drop", {"layer_choice": "top", "epochs": 0}),
    "layer_drop_top_ft": ("layer_drop", {"layer_choice": "top"}),  # epochs: --retrain-epochs
    "importance": ("importance", {}),
}
# The settings a resumed run must share with the one that started --work.
SMOKE = {
    "model": None,
    "max_seq_length": 16,
    "max_train_samples": 300,
    "max_validation_samples": 12,
    "max_test_samples": 12,
    "steps": 2,
    "batch_size": 4,
    "num_trials": 4,
    "num_samples": 128,
    "new_tokens": 4,
    "prompt_tokens": 4,
}
PROMPT = "ROMEO. But soft, what light through yonder window breaks? It is the east, and Juliet is the sun."


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default="smollm2-135m", help="a causal LM of a supported family (default: %(default)s)"
    )
    parser.add_argument(
        "--dataset", default="shakespeare", help="shakespeare, or text with --train-file etc. (default: %(default)s)"
    )
    parser.add_argument("--train-file")
    parser.add_argument("--validation-file")
    parser.add_argument("--test-file")
    parser.add_argument(
        "--methods", nargs="+", default=METHODS, choices=METHODS, help="run in this order (default: all)"
    )
    parser.add_argument(
        "--budgets", default="0.25,0.5,0.75", help="fractions of the layer parameters (default: %(default)s)"
    )
    parser.add_argument(
        "--max-seq-length", type=int, default=128, help="tokens per block of text (default: %(default)s)"
    )
    parser.add_argument("--max-train-samples", type=int, default=600, help="training paragraphs (default: %(default)s)")
    parser.add_argument(
        "--max-validation-samples", type=int, default=40, help="validation paragraphs (default: %(default)s)"
    )
    parser.add_argument("--max-test-samples", type=int, default=60, help="test paragraphs (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=36, help="super-network fine-tuning steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=4, help="blocks per step (default: %(default)s)")
    parser.add_argument(
        "--lr", type=float, default=5e-5, help="super-network and layer_drop_top_ft (default: %(default)s)"
    )
    parser.add_argument("--strategy", default="sandwich_kd", help="super-network strategy (default: %(default)s)")
    parser.add_argument("--search-space", default="small", help="super-network search space (default: %(default)s)")
    parser.add_argument("--searcher", default="local_search", help="(default: %(default)s)")
    parser.add_argument("--num-trials", type=int, default=20, help="search evaluations (default: %(default)s)")
    parser.add_argument(
        "--num-samples",
        type=int,
        default=128,
        help="calibration blocks of importance and block influence (default: %(default)s)",
    )
    parser.add_argument(
        "--retrain-epochs", type=int, default=1, help="layer_drop_top_ft fine-tuning epochs (default: %(default)s)"
    )
    parser.add_argument("--new-tokens", type=int, default=16, help="generated tokens per timing (default: %(default)s)")
    parser.add_argument(
        "--prompt-tokens", type=int, default=16, help="prompt tokens before generation (default: %(default)s)"
    )
    parser.add_argument(
        "--work", default="runs/decoder_pruning", help="run folders and state.json (default: %(default)s)"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --work")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --work")
    parser.add_argument("--tag", default="", help="suffix for the result files (--smoke: smoke)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny random LLaMA (GQA 4/2 heads) and tiny budgets: "
        + ", ".join(f"{k}={v}" for k, v in SMOKE.items() if v is not None),
    )
    args = parser.parse_args(argv)
    if args.smoke:  # smoke values replace the defaults; options given explicitly still win
        parser.set_defaults(**SMOKE, tag="smoke")
        args = parser.parse_args(argv)
    return args


def check(args: argparse.Namespace) -> tuple[float, ...]:
    """The budgets; a setting no run can use is a UserError (one sentence, exit code 2)."""
    from nas_tune.settings import check_budgets, is_text_dataset

    if not is_text_dataset(args.dataset):
        raise UserError(
            f"decoder_pruning.py benchmarks causal language modelling, not '{args.dataset}'; use --dataset shakespeare or text."
        )
    for name in (
        "max_seq_length",
        "max_train_samples",
        "max_validation_samples",
        "max_test_samples",
        "steps",
        "batch_size",
        "num_trials",
        "num_samples",
        "retrain_epochs",
        "new_tokens",
        "prompt_tokens",
    ):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}.")
    if args.resume and args.overwrite:
        raise UserError("--resume continues the run in --work and --overwrite replaces it; pass one of them.")
    try:
        budgets = tuple(float(part) for part in args.budgets.split(",") if part.strip())
    except ValueError:
        raise UserError(
            f"--budgets must be comma-separated fractions such as 0.25,0.5,0.75, got {args.budgets!r}."
        ) from None
    return check_budgets(budgets)


def identity(args: argparse.Namespace) -> dict:
    """What a resumed run must share with the run that started --work (everything but where and how it reports)."""
    return {k: v for k, v in vars(args).items() if k not in {"resume", "overwrite", "tag", "work", "methods"}}


class Bench:
    def __init__(self, args: argparse.Namespace, budgets: tuple[float, ...], argv: list[str] | None):
        from nas_tune.data import DataConfig

        self.args, self.budgets = args, budgets
        self.work = Path(args.work)
        self.command = "python benchmarks/decoder_pruning.py " + " ".join(sys.argv[1:] if argv is None else argv)
        self.name = "decoder_pruning" + (f"_{args.tag}" if args.tag else "")
        self.state_path = self.work / "state.json"
        self.state = self.open_state()
        self.model = str(self.tiny_model()) if args.smoke and args.model is None else args.model
        self.data = DataConfig(
            args.dataset,
            data_dir=None,
            train_file=args.train_file,
            validation_file=args.validation_file,
            test_file=args.test_file,
            max_train_samples=args.max_train_samples,
            max_validation_samples=args.max_validation_samples,
            max_test_samples=args.max_test_samples,
        )

    def open_state(self) -> dict:
        from nas_tune.io import read_json

        wanted = identity(self.args)
        if self.state_path.is_file() and not self.args.overwrite:
            state = read_json(self.state_path)
            if not self.args.resume:
                raise UserError(
                    f"{self.work} already holds a decoder_pruning run; pass --resume to continue it or --overwrite to replace it."
                )
            if state["settings"] != wanted:
                differing = sorted(k for k in wanted if state["settings"].get(k) != wanted[k])
                raise UserError(
                    f"{self.work} holds a run with other settings ({', '.join(differing)}); pass the same settings to "
                    "--resume it, or --overwrite."
                )
            return state
        if self.work.exists() and self.args.overwrite:
            shutil.rmtree(self.work)
        return {"settings": wanted, "commands": [], "units": {}, "points": []}

    def save(self) -> None:
        from nas_tune.io import atomic_write_json

        self.work.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.state_path, self.state)
        write_results(self.state, self.name)

    def unit(self, key: str, work) -> dict:
        """Run `work()` once: its result is kept in the state (a resumed run skips it) and the results are rewritten."""
        if key not in self.state["units"]:
            log(f"{key} ...")
            start, cpu = time.perf_counter(), time.process_time()
            result = work()
            # CPU seconds of this process (all threads): on a shared machine, cpu_s / threads estimates the idle wall time
            self.state["units"][key] = {
                **result,
                "unit_seconds": time.perf_counter() - start,
                "cpu_s": time.process_time() - cpu,
                "threads": torch.get_num_threads(),
                "load_average": os.getloadavg()[0],
            }
            self.save()
            log(f"{key}: {self.state['units'][key]}")
        return self.state["units"][key]

    def tiny_model(self) -> Path:
        """--smoke: a random 3-layer LLaMA with grouped-query attention (4 query / 2 key-value heads), MiniLM's tokenizer."""
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        from nas_tune.models import bundled_model_path

        path = self.work / "tiny-llama"
        if not (path / "config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(bundled_model_path())
            torch.manual_seed(0)
            config = LlamaConfig(
                vocab_size=tokenizer.vocab_size,
                hidden_size=64,
                intermediate_size=96,
                num_hidden_layers=4,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=16,
                max_position_embeddings=128,
                tie_word_embeddings=True,
                pad_token_id=tokenizer.pad_token_id,
            )
            LlamaForCausalLM(config).save_pretrained(path)
            tokenizer.save_pretrained(path)
        return path

    # --- units ---------------------------------------------------------------------------------------------------

    def run(self) -> None:
        self.state["commands"] = list(dict.fromkeys([*self.state["commands"], self.command]))
        self.save()
        self.unit("unpruned", self.unpruned)
        for method in self.args.methods:  # in the order given: a stopped run has the first ones
            if method == "nas":
                self.nas()
            else:
                self.baseline(method)

    def unpruned(self) -> dict:
        from nas_tune.baselines import Scorer
        from nas_tune.export import export_subnetwork
        from nas_tune.models import SubNetwork

        inputs = self.inputs()
        model, adapter = inputs.loaded.model, inputs.loaded.adapter
        full = SubNetwork.full(adapter.shape(model))
        scored = Scorer(inputs).measure(adapter.extract(model, full).eval(), full)
        folder = self.work / "models" / "unpruned"
        export_subnetwork(model, inputs.loaded.tokenizer, adapter, full, folder, overwrite=True)
        return self.point("unpruned", 1.0, scored, folder, finetune_s=0.0, prune_s=0.0)

    def inputs(self):
        from nas_tune.baselines import load_inputs

        return load_inputs(self.model, self.data, max_seq_length=self.args.max_seq_length)

    def nas(self) -> None:
        from nas_tune.io import read_json
        from nas_tune.report.summary import completed_trials
        from nas_tune.search.driver import SearchSettings
        from nas_tune.search.run import search_checkpoint
        from nas_tune.search.store import ResultsStore
        from nas_tune.select import pick, test_evaluator
        from nas_tune.supernet import FinetuneConfig
        from nas_tune.supernet.run import finetune_supernet

        args, supernet, search = self.args, self.work / "supernet", self.work / "search"

        def finetune() -> dict:
            config = FinetuneConfig(
                strategy=args.strategy,
                search_space=args.search_space,
                epochs=1000,
                max_steps=args.steps,
                batch_size=args.batch_size,
                lr=args.lr,
                save_steps=max(10, args.steps // 4),
            )
            finetune_supernet(
                self.model,
                self.data,
                config,
                supernet,
                max_seq_length=args.max_seq_length,
                resume=supernet.exists(),
                show_progress=True,
            )  # its progress bar (seconds per step) goes to the log
            return {"finetune_s": read_json(supernet / "supernet.json")["train_seconds"]}

        def searched() -> dict:
            settings = SearchSettings(searcher=args.searcher, num_trials=args.num_trials, seed=0)
            store, _ = search_checkpoint(
                supernet, search, settings, resume=(search / "metadata.json").is_file(), show_progress=True
            )
            frame = completed_trials(store)
            return {"search_s": float(frame["end_time"].max() - frame["start_time"].min()), "trials": len(frame)}

        costs = {**self.unit("nas_finetune", finetune), **self.unit("nas_search", searched)}
        setup = tester = None
        trials = completed_trials(ResultsStore(search))
        for budget in self.budgets:
            key = f"nas@{budget}"
            if key in self.state["units"]:
                continue
            if setup is None:  # loaded once, only when a point is missing
                _, setup = search_checkpoint(
                    supernet,
                    search,
                    SearchSettings(searcher=args.searcher, num_trials=args.num_trials, seed=0),
                    resume=True,
                    show_progress=False,
                )
                tester = test_evaluator(setup, args.max_seq_length)
            self.unit(key, partial(self.nas_point, setup, tester, pick(trials, max_params=budget), budget, costs))

    def nas_point(self, setup, tester, row: pd.Series, budget: float, costs: dict) -> dict:
        """Export the search's best validation pick within `budget`, test and time it."""
        from nas_tune.select import export_pick

        folder = self.work / "models" / f"nas-{budget}"
        item = export_pick(
            setup, tester, row, folder, name=folder.name, provenance={"benchmark": "decoder_pruning"}, overwrite=True
        )
        scored = {
            "params": float(row["params"]),
            "total_fraction": float(row["total_fraction"]),
            "perplexity": float(row["perplexity"]),
            **{f"test_{k}": v for k, v in item.test.metrics.items()},
        }
        return self.point("nas", budget, scored, folder, finetune_s=costs["finetune_s"], prune_s=costs["search_s"])

    def baseline(self, method: str) -> None:
        from nas_tune.baselines import BASELINES, BaselineSettings, run_baseline
        from nas_tune.report.summary import completed_trials
        from nas_tune.search.store import ResultsStore
        from nas_tune.select import config_of

        name, overrides = BASELINE_RUNS[method]
        if method == "layer_drop_top_ft":
            overrides = {**overrides, "epochs": self.args.retrain_epochs}
        run_dir = self.work / method

        def pruned() -> dict:
            settings = BaselineSettings(
                budgets=self.budgets,
                num_samples=self.args.num_samples,
                batch_size=self.args.batch_size,
                lr=self.args.lr,
                export=True,
                **overrides,
            )
            store = run_baseline(
                BASELINES[name](self.inputs(), settings),
                run_dir,
                resume=(run_dir / "metadata.json").is_file(),
                show_progress=False,
            )
            return {"prepare_s": float(store.read_metadata().get("prepare_seconds", 0.0))}

        prepared = self.unit(method, pruned)
        rows = completed_trials(ResultsStore(run_dir)).sort_values("params")
        finetune_total = float(rows["finetune_seconds"].sum()) if "finetune_seconds" in rows else 0.0
        prune_total = prepared["prepare_s"] + float(rows["prune_seconds"].sum())
        for budget in self.budgets:
            key = f"{method}@{budget}"
            fitting = rows[rows["params"] <= budget + 1e-12]
            if key in self.state["units"] or fitting.empty:
                continue
            row = fitting.iloc[-1]  # the largest model within the budget
            folder = (
                run_dir / "models" / "_".join(f"{k}-{v}" for k, v in config_of(row).items())
            )  # where the baseline exported it
            self.unit(
                key,
                partial(
                    self.point, method, budget, row.to_dict(), folder, finetune_s=finetune_total, prune_s=prune_total
                ),
            )

    # --- one point ------------------------------------------------------------------------------------------------

    def point(
        self, method: str, budget: float, scored: dict, folder: Path, *, finetune_s: float, prune_s: float
    ) -> dict:
        """Record a pruned model's perplexities, sizes and the measured speed of its exported folder."""
        speed = measure_speed(folder, self.args.prompt_tokens, self.args.new_tokens, self.args.max_seq_length)
        point = {
            "method": method,
            "budget": budget,
            "params": float(scored.get("params", 1.0)),
            "total_fraction": float(scored.get("total_fraction", 1.0)),
            "val_perplexity": float(scored["perplexity"]),
            "test_perplexity": float(scored["test_perplexity"]),
            **speed,
            "finetune_s": finetune_s,
            "prune_s": prune_s,
            "total_s": finetune_s + prune_s,
            "folder": str(folder),
        }
        self.state["points"] = [p for p in self.state["points"] if (p["method"], p["budget"]) != (method, budget)] + [
            point
        ]
        return point


def measure_speed(folder: Path, prompt_tokens: int, new_tokens: int, prefill_tokens: int) -> dict[str, float]:
    """Greedy generation speed with the KV cache (batch 1) and prefill latency of an exported folder, loaded as a user
    would (`AutoModelForCausalLM`, remote code for exports no stock config describes)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nas_tune.metrics.latency import measure_latency

    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(PROMPT * 4, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :prompt_tokens]
    options = {
        "attention_mask": torch.ones_like(ids),
        "do_sample": False,
        "use_cache": True,
        "pad_token_id": model.config.pad_token_id,
    }
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, **options)  # warm-up
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **options)
            seconds.append(time.perf_counter() - start)
    assert out.shape[1] == ids.shape[1] + new_tokens
    prefill = measure_latency(model, batch_size=1, seq_len=prefill_tokens, warmup=1, repeats=5)
    return {
        "tokens_per_s": new_tokens / statistics.median(seconds),
        "prefill_ms": 1000 * prefill,
        "exported_params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
    }


# --- results -------------------------------------------------------------------------------------------------------


def write_results(state: dict, name: str) -> None:
    from nas_tune.io import atomic_write_json, atomic_write_text

    RESULTS.mkdir(exist_ok=True)
    points = pd.DataFrame(state["points"])
    atomic_write_json(
        RESULTS / f"{name}.json",
        {
            "commands": state["commands"],
            "settings": state["settings"],
            "units": state["units"],
            "load_average": os.getloadavg(),
        },
    )
    if points.empty:
        return
    order = ["unpruned", *METHODS]
    points = points.sort_values(["method", "budget"], key=lambda c: c.map(order.index) if c.name == "method" else c)
    columns = [
        "method",
        "budget",
        "params",
        "total_fraction",
        "val_perplexity",
        "test_perplexity",
        "tokens_per_s",
        "prefill_ms",
        "finetune_s",
        "prune_s",
        "total_s",
    ]
    table = points[columns].round(
        {
            "params": 3,
            "total_fraction": 3,
            "val_perplexity": 2,
            "test_perplexity": 2,
            "tokens_per_s": 1,
            "prefill_ms": 1,
            "finetune_s": 0,
            "prune_s": 0,
            "total_s": 0,
        }
    )
    atomic_write_text(RESULTS / f"{name}.csv", points.to_csv(index=False))
    commands = "\n".join(f"    {c}" for c in state["commands"])
    atomic_write_text(RESULTS / f"{name}.md", f"Produced by:\n\n{commands}\n\n{markdown(table)}")
    plot(points, RESULTS / f"{name}.png")


def markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(str(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def plot(points: pd.DataFrame, path: Path) -> None:
    from nas_tune.report.plots import save_figure

    figure = Figure(figsize=(7, 5), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for method, front in points[points.method != "unpruned"].groupby("method", sort=False):
        front = front.sort_values("params")
        axes.plot(front["params"], front["test_perplexity"], marker="o", markersize=4, linewidth=1, label=method)
    unpruned = points[points.method == "unpruned"]
    if len(unpruned):
        axes.axhline(
            float(unpruned["test_perplexity"].iloc[0]), color="grey", linestyle="--", linewidth=0.8, label="unpruned"
        )
    axes.set_yscale("log")
    axes.set(
        xlabel="fraction of layer parameters kept",
        ylabel="test perplexity (log scale)",
        title="decoder pruning: test perplexity per budget",
    )
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    save_figure(figure, path)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        budgets = check(args)
        from nas_tune.cli import quiet_libraries

        quiet_libraries()
        bench = Bench(args, budgets, argv)
        bench.run()
    except UserError as error:
        print(f"decoder_pruning.py: error: {error}", file=sys.stderr)
        return 2
    log(f"results in {RESULTS / bench.name}.{{csv,json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
