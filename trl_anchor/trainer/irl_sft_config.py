"""Configuration of `IRLSFTTrainer` (reward learning from SFT demonstrations: RFT and IRFT)."""

from dataclasses import dataclass, field

from trl.trainer.base_config import _BaseConfig

from ..anchors import validate_thresholds
from ..rewards.transforms import RewardTransform
from .reward_config import REWARD_TYPES

MODES = ("implicit", "explicit")
POLICY_IMPROVEMENTS = ("best_of_n", "grpo", "rloo")
DEMO_WEIGHTINGS = ("none", "gaussian")


@dataclass
class IRLSFTConfig(_BaseConfig):
    r"""
    Configuration class for the [`IRLSFTTrainer`].

    Every [`~transformers.TrainingArguments`] field (`learning_rate`, `per_device_train_batch_size`,
    `num_train_epochs`/`max_steps`, `bf16`, `gradient_checkpointing`, `deepspeed`, `report_to`, `seed`, ...) configures
    the *policy* step of each round and is copied into the TRL config of the trainer that runs it (`DPOConfig`,
    `SFTConfig`, `GRPOConfig` or `RLOOConfig`); `num_train_epochs`/`max_steps` count per round. The reward step of the
    explicit mode gets its own learning rate and length (`reward_*` fields) and otherwise the same settings.

    Parameters:
        model_init_kwargs (`dict[str, Any]`, *optional*):
            Keyword arguments of [`~transformers.AutoModelForCausalLM.from_pretrained`] for every load of the policy
            (generation, scoring and each round's trainer), e.g. `{"dtype": "bfloat16"}`.

        > Parameters of the outer loop (Li et al., 2024, Algorithms 1 and 2)

        mode (`str`, *optional*, defaults to `"implicit"`):
            `"implicit"` is IRFT (Algorithm 2): the reward is the policy's log-ratio to the previous round's policy,
            trained with TRL's `DPOTrainer` on (demonstration ≻ sample) pairs. `"explicit"` is RFT (Algorithm 1): a
            (Gaussian or BT) reward model is trained on those pairs with `AnchorGaussianRewardTrainer`, then the
            policy is improved against it.
        num_rounds (`int`, *optional*, defaults to `3`):
            Number T of outer rounds; each round generates fresh samples from the current policy.
        num_samples_per_prompt (`int`, *optional*, defaults to `2`):
            Samples K generated per prompt and round; each one that differs from the demonstration makes a pair.
        beta (`float`, *optional*, defaults to `0.1`):
            β of the KL-regularised policy objective `E[r] − β·KL(π ‖ π_prev)`: DPO's β in the implicit mode, the KL
            coefficient of GRPO/RLOO in the explicit mode.
        sft_loss_weight (`float`, *optional*, defaults to `0.0`):
            Implicit mode: weight of the SFT loss on the demonstrations added to the DPO loss (TRL's
            `loss_type=["sigmoid", "sft"]`). `0` is the paper's objective; with small models or large learning rates
            the DPO loss alone also lowers the demonstrations' likelihood, which a weight near 1 prevents (the
            `irl-sft-study` uses 1).
        split_prompts_across_rounds (`bool`, *optional*, defaults to `False`):
            Round t uses only the t-th of T disjoint slices of the prompts (one pass over the data in total, the
            authors' stage-wise schedule) instead of every prompt.

        > Parameters of the generation

        max_new_tokens (`int`, *optional*, defaults to `256`):
            Maximum number of tokens generated per sample.
        temperature (`float`, *optional*, defaults to `1.0`):
            Sampling temperature.
        top_p (`float`, *optional*, defaults to `1.0`):
            Nucleus-sampling probability mass.
        generation_batch_size (`int`, *optional*, defaults to `32`):
            Prompts per `generate` call (transformers generation).
        use_vllm (`bool`, *optional*):
            Generate with vLLM. `None` uses it when it is installed and a CUDA device is present.
        vllm_gpu_memory_utilization (`float`, *optional*, defaults to `0.4`):
            GPU memory fraction vLLM may reserve.
        kl_num_prompts (`int`, *optional*, defaults to `64`):
            Prompts on which each round estimates `KL(π_t ‖ π_0)` from one fresh sample each; `0` disables it.
        max_length (`int`, *optional*, defaults to `1024`):
            Maximum prompt + completion tokens in every training step (passed to each round's TRL config).

        > Parameters of the reward step (explicit mode, or `demo_weighting="gaussian"`)

        reward_type (`str`, *optional*, defaults to `"gaussian"`):
            `"gaussian"` (mean μ and variance σ²) or `"bt"` (Bradley–Terry).
        reward_model_name_or_path (`str`, *optional*):
            Initial reward model; `None` starts from the initial policy's weights with a new reward head. Later
            rounds continue from the previous round's reward model (the reward update of Algorithm 1).
        reward_learning_rate (`float`, *optional*, defaults to `1e-5`):
            Learning rate of the reward step.
        reward_num_train_epochs (`float`, *optional*, defaults to `1.0`):
            Epochs of the reward step over the round's pairs.
        reward_max_steps (`int`, *optional*, defaults to `-1`):
            If positive, the number of optimizer steps of the reward step (overrides `reward_num_train_epochs`).
        anchor_demonstrations (`bool`, *optional*, defaults to `False`):
            Give every demonstration the top anchor class of `anchor_thresholds` (the demonstration's latent reward
            exceeds every threshold); policy samples carry no anchor. Gaussian reward models only.
        anchor_thresholds (`list[float]`, *optional*, defaults to `[0.0]`):
            Thresholds τ_1 < … < τ_K of the demonstration anchors.
        anchor_lambda (`float`, *optional*, defaults to `0.1`):
            Weight λ of the anchor likelihood.

        > Parameters of the policy step of the explicit mode

        policy_improvement (`str`, *optional*, defaults to `"best_of_n"`):
            `"best_of_n"`: per prompt, keep the candidate (the K samples, plus the demonstration when
            `best_of_n_include_demonstration`) with the highest transformed reward and run SFT on the winners
            (rejection-sampling fine-tuning). `"grpo"`/`"rloo"`: TRL's `GRPOTrainer`/`RLOOTrainer` with the reward
            model as a `GaussianRewardFunction`, `num_samples_per_prompt` generations per prompt.
        reward_transform (`str`, *optional*, defaults to `"mean"`):
            `RewardTransform` spec of the policy's reward, e.g. `"quantile:0.25"` or `"lcb:1"` (risk-averse; need
            σ, so `reward_type="gaussian"`).
        best_of_n_include_demonstration (`bool`, *optional*, defaults to `True`):
            Let the demonstration compete with the samples in best-of-N.

        > Parameters of the variance-aware demonstration weighting

        demo_weighting (`str`, *optional*, defaults to `"none"`):
            `"gaussian"` weights each demonstration by the Gaussian reward model's probability that it beats the
            policy's samples, `mean_k Φ((μ_d − μ_k) / sqrt(σ_d² + σ_k²))`: low μ or high σ lowers it. The weights
            (normalised to mean 1) resample the demonstration pairs of the implicit mode and the best-of-N winners
            that are demonstrations. The implicit mode then trains a Gaussian reward model each round for them.
    """

    _VALID_DICT_FIELDS = _BaseConfig._VALID_DICT_FIELDS + ["model_init_kwargs"]

    model_init_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Keyword arguments of `AutoModelForCausalLM.from_pretrained` for the policy (e.g. dtype)."},
    )
    mode: str = field(
        default="implicit",
        metadata={"help": "'implicit' (IRFT: DPO on demo ≻ sample pairs) or 'explicit' (RFT: reward model + policy "
                  "improvement).", "choices": list(MODES)},
    )
    num_rounds: int = field(default=3, metadata={"help": "Number T of outer rounds (fresh samples each round)."})
    num_samples_per_prompt: int = field(
        default=2, metadata={"help": "Samples K generated per prompt and round."}
    )
    beta: float = field(
        default=0.1,
        metadata={"help": "β of E[r] − β·KL(π ‖ π_prev): DPO's β (implicit), GRPO/RLOO's KL coefficient (explicit)."},
    )
    sft_loss_weight: float = field(
        default=0.0, metadata={"help": "Implicit mode: weight of the SFT loss on demonstrations added to DPO."}
    )
    split_prompts_across_rounds: bool = field(
        default=False, metadata={"help": "Round t uses only the t-th of T disjoint slices of the prompts."}
    )
    max_new_tokens: int = field(default=256, metadata={"help": "Maximum number of tokens generated per sample."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus-sampling probability mass."})
    generation_batch_size: int = field(default=32, metadata={"help": "Prompts per transformers `generate` call."})
    use_vllm: bool | None = field(
        default=None, metadata={"help": "Generate with vLLM; None: when installed and a CUDA device is present."}
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.4, metadata={"help": "GPU memory fraction vLLM may reserve."}
    )
    kl_num_prompts: int = field(
        default=64, metadata={"help": "Prompts used to estimate KL(π_t ‖ π_0) after each round; 0 disables it."}
    )
    max_length: int | None = field(
        default=1024, metadata={"help": "Maximum prompt + completion tokens in every training step."}
    )
    reward_type: str = field(
        default="gaussian",
        metadata={"help": "'gaussian' (μ, σ²) or 'bt' (Bradley–Terry) reward model.", "choices": list(REWARD_TYPES)},
    )
    reward_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Initial reward model; None: the initial policy with a new reward head."}
    )
    reward_learning_rate: float = field(default=1e-5, metadata={"help": "Learning rate of the reward step."})
    reward_num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs of the reward step per round."})
    reward_max_steps: int = field(
        default=-1, metadata={"help": "If > 0, optimizer steps of the reward step (overrides the epochs)."}
    )
    anchor_demonstrations: bool = field(
        default=False, metadata={"help": "Give every demonstration the top anchor class (Gaussian reward only)."}
    )
    anchor_thresholds: list[float] = field(
        default_factory=lambda: [0.0], metadata={"help": "Thresholds of the demonstration anchors."}
    )
    anchor_lambda: float = field(default=0.1, metadata={"help": "Weight λ of the anchor likelihood."})
    policy_improvement: str = field(
        default="best_of_n",
        metadata={"help": "Explicit mode: 'best_of_n' (rejection-sampling SFT), 'grpo' or 'rloo'.",
                  "choices": list(POLICY_IMPROVEMENTS)},
    )
    reward_transform: str = field(
        default="mean", metadata={"help": "RewardTransform spec of the policy's reward, e.g. 'quantile:0.25'."}
    )
    best_of_n_include_demonstration: bool = field(
        default=True, metadata={"help": "Let the demonstration compete with the samples in best-of-N."}
    )
    demo_weighting: str = field(
        default="none",
        metadata={"help": "'gaussian': weight demonstrations by the Gaussian reward model's P(demo ≻ samples).",
                  "choices": list(DEMO_WEIGHTINGS)},
    )

    def __post_init__(self):
        super().__post_init__()
        _check_choice("mode", self.mode, MODES)
        _check_choice("reward_type", self.reward_type, REWARD_TYPES)
        _check_choice("policy_improvement", self.policy_improvement, POLICY_IMPROVEMENTS)
        _check_choice("demo_weighting", self.demo_weighting, DEMO_WEIGHTINGS)
        for name in ("num_rounds", "num_samples_per_prompt", "max_new_tokens", "generation_batch_size"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)!r}.")
        for name in ("beta", "temperature", "reward_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be > 0, got {getattr(self, name)}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"`top_p` must lie in (0, 1], got {self.top_p}.")
        if not self.sft_loss_weight >= 0:
            raise ValueError(f"`sft_loss_weight` must be ≥ 0, got {self.sft_loss_weight}.")
        if self.kl_num_prompts < 0:
            raise ValueError(f"`kl_num_prompts` must be ≥ 0, got {self.kl_num_prompts}.")
        if isinstance(self.anchor_thresholds, str):
            self.anchor_thresholds = [float(t) for t in self.anchor_thresholds.split(",")]
        self.anchor_thresholds = validate_thresholds(self.anchor_thresholds)
        self._check_mode_options()

    def _check_mode_options(self) -> None:
        transform = RewardTransform.parse(self.reward_transform)  # raises on a malformed spec
        needs_gaussian = {
            "anchor_demonstrations": self.anchor_demonstrations,
            f"reward_transform={self.reward_transform!r}": transform.needs_std,
            "demo_weighting='gaussian'": self.demo_weighting == "gaussian",
        }
        for option, used in needs_gaussian.items():
            if used and self.reward_type != "gaussian":
                raise ValueError(f"`{option}` needs σ, so `reward_type='gaussian'` (got {self.reward_type!r}).")
        if self.mode == "implicit" and self.policy_improvement != "best_of_n":
            raise ValueError(
                f"`policy_improvement={self.policy_improvement!r}` applies to mode='explicit'; the implicit mode "
                "improves the policy with DPO."
            )
        if self.mode == "explicit" and self.sft_loss_weight > 0:
            raise ValueError("`sft_loss_weight` mixes SFT into the DPO loss of mode='implicit' only.")
        if self.demo_weighting == "gaussian" and self.mode == "explicit" and self.policy_improvement != "best_of_n":
            raise ValueError(
                "`demo_weighting='gaussian'` reweights demonstrations the policy step trains on; with "
                f"policy_improvement={self.policy_improvement!r} it trains on none. Use 'best_of_n' or "
                "mode='implicit'."
            )


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")
