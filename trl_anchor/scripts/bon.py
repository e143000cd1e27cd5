"""`trl-anchor bon`: best-of-N with a (Gaussian) reward model.

Pipeline mode (default) runs the stages `generate → score → evaluate → select` of `trl_anchor.pipelines.best_of_n` over
the prompts of a dataset, caching each in `--output_dir` so an interrupted run picks up where it stopped:

    trl-anchor bon --dataset_name prompts.jsonl --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct \
        --reward_model_path outputs/quickstart/gaussian_anchored --gold_scorer Skywork/Skywork-Reward-V2-Qwen3-0.6B \
        --num_samples 16 --policies mean quantile:0.1 lcb:1.0 random --output_dir outputs/bon

Caption-benchmark mode ranks real captions of held-out caption-contest contests, no generation:

    trl-anchor bon --caption_benchmark --reward_model_path outputs/quickstart/gaussian_anchored \
        --caption_data_dir ../shared/data/caption_contest --pool_size 32 --output_dir outputs/caption_bon

Either way `--config recipe.yaml` works as with every `trl-anchor` command.
"""

from dataclasses import dataclass, field

from transformers.utils import logging

from trl_anchor.data.caption_contest_files import DEFAULT_MIN_VOTES
from trl_anchor.pipelines.best_of_n import DEFAULT_POLICIES, STAGES
from trl_anchor.scripts.utils import DTYPES

logger = logging.get_logger("trl_anchor.scripts.bon")


@dataclass
class BestOfNScriptArguments:
    output_dir: str = field(default="outputs/bon", metadata={"help": "Where stage caches, summaries and plots go."})
    caption_benchmark: bool = field(
        default=False,
        metadata={"help": "Run the real caption benchmark (held-out caption-contest pools, crowd votes as gold) "
                  "instead of the generation pipeline."},
    )
    reward_model_path: str | None = field(
        default=None, metadata={"help": "The (Gaussian) reward model that selects: local path or Hub id."}
    )
    policies: list[str] = field(
        default_factory=lambda: list(DEFAULT_POLICIES),
        metadata={"help": "Selection policies: RewardTransform specs (mean, quantile:<q>, lcb:<k>, "
                  "random_quantile:<lo>:<hi>, variance_penalty:<b>, with ,normalize / ,seed:<n>) and `random`. "
                  "`oracle` (select by gold) is added whenever a gold reward exists."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of generation, caption pools and random-quantile draws."})
    reward_batch_size: int = field(default=16, metadata={"help": "Reward-model (and gold-model) batch size."})
    reward_max_length: int | None = field(
        default=None, metadata={"help": "Keep the last this many tokens of longer scored sequences."}
    )
    stages: list[str] = field(
        default_factory=lambda: list(STAGES),
        metadata={"help": f"Pipeline stages to run, of {list(STAGES)} (always in that order). `evaluate` is skipped "
                  "when no --gold_scorer is given and the stages are left at their default."},
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Prompts: a local json/jsonl/parquet/csv file, a saved dataset folder or a Hub id."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration (subset) name."})
    dataset_split: str = field(default="train", metadata={"help": "Dataset split holding the prompts."})
    prompt_column: str = field(
        default="prompt", metadata={"help": "Column with the prompts (text or a list of chat messages)."}
    )
    id_column: str | None = field(
        default=None, metadata={"help": "Column with unique prompt ids (default: the row number)."}
    )
    num_prompts: int | None = field(default=None, metadata={"help": "Use only the first this many prompts."})
    num_samples: int = field(default=16, metadata={"help": "N: completions generated per prompt."})
    gold_scorer: str | None = field(
        default=None,
        metadata={"help": "Gold reward: a sequence-classification reward model (path or Hub id) or a Python "
                  "callable `package.module:function` taking (prompts, completions) and returning floats."},
    )
    no_plot: bool = field(default=False, metadata={"help": "Skip the PNG plot."})


@dataclass
class BestOfNGenerationArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Policy (causal LM) that generates the completions: path or Hub id."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (0 = greedy)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling (0 disables it)."})
    max_new_tokens: int = field(default=128, metadata={"help": "Maximum tokens per completion."})
    generation_batch_size: int = field(default=16, metadata={"help": "Sequences per generate call."})
    backend: str = field(
        default="auto",
        metadata={"help": "`transformers`, `vllm`, or `auto` (vLLM when installed and a GPU is present)."},
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "Policy weights dtype (auto, bfloat16, float16, float32).", "choices": list(DTYPES)},
    )


@dataclass
class CaptionBenchmarkArguments:
    caption_data_dir: str | None = field(
        default=None, metadata={"help": "Caption-contest folder with summaries/ and descriptions.csv."}
    )
    caption_contests: list[int] | None = field(
        default=None,
        metadata={"help": "Held-out contests to benchmark on (default: the test split given by --caption_test_size "
                  "and --caption_split_seed, which must match the reward model's training split)."},
    )
    caption_test_size: float = field(default=0.1, metadata={"help": "Test fraction of the training split by contest."})
    caption_validation_size: float = field(
        default=0.0, metadata={"help": "Validation fraction of the training split by contest (the study uses 0.1)."}
    )
    caption_split_seed: int = field(default=0, metadata={"help": "Seed of the training split by contest."})
    pool_size: int = field(default=32, metadata={"help": "N: captions per candidate pool."})
    pools_per_contest: int = field(default=4, metadata={"help": "Candidate pools drawn per held-out contest."})
    min_votes: int = field(
        default=DEFAULT_MIN_VOTES, metadata={"help": "Leave out captions with fewer crowd votes (loader default)."}
    )
    conversational: bool | None = field(
        default=None,
        metadata={"help": "Score (description, caption) as chat messages (true) or text (false); default: chat when "
                  "the reward model's tokenizer has a chat template."},
    )


def run_caption_benchmark_mode(args: BestOfNScriptArguments, caption: CaptionBenchmarkArguments):
    from trl_anchor.studies.caption_benchmark import run_caption_benchmark

    if args.reward_model_path is None or caption.caption_data_dir is None:
        raise ValueError("--caption_benchmark needs --reward_model_path and --caption_data_dir.")
    result = run_caption_benchmark(
        args.reward_model_path,
        caption.caption_data_dir,
        output_dir=args.output_dir,
        contests=caption.caption_contests,
        test_size=caption.caption_test_size,
        validation_size=caption.caption_validation_size,
        split_seed=caption.caption_split_seed,
        pool_size=caption.pool_size,
        pools_per_contest=caption.pools_per_contest,
        policies=args.policies,
        seed=args.seed,
        min_votes=caption.min_votes,
        conversational=caption.conversational,
        batch_size=args.reward_batch_size,
        max_length=args.reward_max_length,
        plot=not args.no_plot,
    )
    print(result.to_markdown())
    return result


def load_prompts(args: BestOfNScriptArguments) -> tuple[list, list | None]:
    """The prompts (and ids) of `--dataset_name`, the first `--num_prompts` of them when given."""
    from trl_anchor.data._common import load_source, require_columns

    if args.dataset_name is None:
        raise ValueError("The best-of-N pipeline needs prompts: pass --dataset_name (or use --caption_benchmark).")
    dataset = load_source(args.dataset_name, args.dataset_split, args.dataset_config)
    columns = [args.prompt_column] + ([args.id_column] if args.id_column else [])
    require_columns(dataset, columns, f"Dataset {args.dataset_name!r}")
    if args.num_prompts is not None:
        if args.num_prompts < 1:
            raise ValueError(f"--num_prompts must be ≥ 1, got {args.num_prompts}.")
        dataset = dataset.select(range(min(args.num_prompts, len(dataset))))
    prompts = dataset[args.prompt_column]
    empty = [i for i, p in enumerate(prompts) if not p]
    if empty:
        raise ValueError(f"Column {args.prompt_column!r} has empty prompts at rows {empty[:10]}.")
    return prompts, dataset[args.id_column] if args.id_column else None


def _stages_to_run(args: BestOfNScriptArguments) -> list[str]:
    unknown = [s for s in args.stages if s not in STAGES]
    if unknown:
        raise ValueError(f"Unknown stages {unknown}; choose from {list(STAGES)}.")
    stages = [s for s in STAGES if s in args.stages]
    if "evaluate" in stages and args.gold_scorer is None:
        if list(args.stages) != list(STAGES):
            raise ValueError("The `evaluate` stage needs --gold_scorer (a reward model or package.module:function).")
        logger.warning("No --gold_scorer: skipping `evaluate`; the report shows the reward model's μ only.")
        stages.remove("evaluate")
    if "score" in stages and args.reward_model_path is None:
        raise ValueError("The `score` stage needs --reward_model_path.")
    return stages


def run_pipeline_mode(args: BestOfNScriptArguments, generation: BestOfNGenerationArguments):
    from trl_anchor.pipelines.best_of_n import BestOfNPipeline, GenerationSettings, check_policies

    stages = _stages_to_run(args)
    check_policies(args.policies)  # reject a bad spec before hours of generation
    if "generate" in stages and generation.model_name_or_path is None:
        raise ValueError("The `generate` stage needs --model_name_or_path (the policy).")
    settings = GenerationSettings(
        temperature=generation.temperature, top_p=generation.top_p, top_k=generation.top_k,
        max_new_tokens=generation.max_new_tokens, seed=args.seed, batch_size=generation.generation_batch_size,
        backend=generation.backend,
    )
    prompts, ids = load_prompts(args)
    pipeline = BestOfNPipeline(prompts, args.output_dir, args.num_samples, prompt_ids=ids)
    computing_stages = {
        "generate": lambda: pipeline.generate(
            generation.model_name_or_path, settings=settings, model_init_kwargs={"dtype": generation.dtype}
        ),
        "score": lambda: pipeline.score(
            args.reward_model_path, batch_size=args.reward_batch_size, max_length=args.reward_max_length
        ),
        "evaluate": lambda: pipeline.evaluate(
            args.gold_scorer, batch_size=args.reward_batch_size, max_length=args.reward_max_length
        ),
    }
    total = len(pipeline.keys())
    report = None
    for stage in stages:
        if stage == "select":
            report = pipeline.select(args.policies, seed=args.seed, plot=not args.no_plot)
            print((pipeline.output_dir / "best_of_n.md").read_text())
        else:
            done = computing_stages[stage]()
            print(f"{stage}: {done} of {total} items computed now, {total - done} taken from {args.output_dir}")
    return report


def main(
    script_args: BestOfNScriptArguments,
    generation_args: BestOfNGenerationArguments | None = None,
    caption_args: CaptionBenchmarkArguments | None = None,
):
    if script_args.caption_benchmark:
        return run_caption_benchmark_mode(script_args, caption_args or CaptionBenchmarkArguments())
    return run_pipeline_mode(script_args, generation_args or BestOfNGenerationArguments())


def make_parser(prog: str | None = None):
    from trl import TrlParser

    return TrlParser((BestOfNScriptArguments, BestOfNGenerationArguments, CaptionBenchmarkArguments), prog=prog)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
