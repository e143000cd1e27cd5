"""Settings of the identifiability simulation (`trl-anchor simulate`): the arms, `SimulationConfig` and the command
line that reproduces a configuration."""

from dataclasses import dataclass, field, fields

from ...anchors import validate_thresholds
from ...models.configuration_gaussian import DEFAULT_VARIANCE_FLOOR

ARMS = ("bt", "gaussian", "gaussian_1_anchor", "gaussian_2_anchor")
ARM_LABELS = {
    "bt": "BT (soft labels)",
    "gaussian": "Gaussian, no anchor",
    "gaussian_1_anchor": "Gaussian, 1 anchor",
    "gaussian_2_anchor": "Gaussian, 2 anchors",
}
SOFT_LABEL_SOURCES = ("annotators", "exact")


@dataclass
class SimulationConfig:
    """Settings of `trl-anchor simulate` (every field is a command-line flag; `--config file.yaml` works too)."""

    output_dir: str | None = field(
        default="reports/simulation",
        metadata={"help": "Where results.json, README.md and the figures are written (None: write nothing)."},
    )
    dim: int = field(default=4, metadata={"help": "Dimension d of the covariates x ~ Uniform[-1, 1]^d (d ≥ 2)."})
    n_pairs: list[int] = field(
        default_factory=lambda: [250, 1000, 4000, 16000],
        metadata={"help": "Training-set sizes (number of pairs; every pair has two fresh responses), a log grid."},
    )
    seeds: list[int] = field(
        default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds; each draws its own data and initialisation."}
    )
    arms: list[str] = field(
        default_factory=lambda: list(ARMS),
        metadata={"help": f"Arms to fit, a subset of {list(ARMS)}.", "choices": list(ARMS)},
    )
    soft_labels: str = field(
        default="annotators",
        metadata={
            "help": "`annotators`: a pair's label is the fraction of `annotators` simulated raters preferring chosen; "
            "`exact`: the exact probit probability.",
            "choices": list(SOFT_LABEL_SOURCES),
        },
    )
    annotators: int = field(default=10, metadata={"help": "Simulated annotators m per pair (soft_labels=annotators)."})
    thresholds: list[float] = field(
        default_factory=lambda: [-0.5, 0.5], metadata={"help": "The two anchor thresholds τ_1 < τ_2 (world units)."}
    )
    single_threshold: float | None = field(
        default=None,
        metadata={"help": "Threshold τ_0 of the 1-anchor arm; default: the midpoint of the two thresholds."},
    )
    anchor_lambda: float = field(
        default=1.0,
        metadata={
            "help": "λ, weight of the anchor NLL. 1 weights each anchor draw like one pair label (the joint "
            "likelihood); the trainer's default 0.1 down-weights noisy real anchors."
        },
    )
    equivalent_scales: list[float] = field(
        default_factory=lambda: [0.5, 2.0],
        metadata={
            "help": "Extra worlds (μ, σ) → (τ_0 + a(μ − τ_0), aσ) fitted at n = equivalence_n; their pairs and "
            "1-anchor labels equal the original world's. `1` alone: skip the check."
        },
    )
    equivalence_n: int | None = field(
        default=2000, metadata={"help": "Pairs for the equivalent-worlds check (None in Python: the largest n)."}
    )
    hidden_size: int = field(default=32, metadata={"help": "Width of the MLP trunk."})
    num_layers: int = field(default=2, metadata={"help": "Hidden layers of the MLP trunk."})
    epochs: int = field(default=600, metadata={"help": "Full-batch Adam steps (one step = one epoch)."})
    learning_rate: float = field(default=1e-2, metadata={"help": "Adam learning rate (cosine decay to 0)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay of every parameter."})
    variance_floor: float = field(
        default=DEFAULT_VARIANCE_FLOOR, metadata={"help": "σ² floor of the variance head, as in the reward model."}
    )
    num_threads: int = field(
        default=1,
        metadata={
            "help": "torch CPU threads during the study (restored afterwards). Full-batch fits of tiny MLPs gain "
            "little from threads and slow down badly when the cores are shared; 0 keeps torch's setting."
        },
    )
    n_test: int = field(default=4096, metadata={"help": "Held-out covariates the errors are measured on."})
    quick: bool = field(
        default=False,
        metadata={"help": "Tiny sizes for smoke tests (n ≤ 300, 2 seeds, 100 epochs); overrides those fields."},
    )

    def __post_init__(self):
        if self.quick:
            self.n_pairs = [100, 300]
            self.seeds = [0, 1]
            self.epochs = 100
            self.hidden_size = 16
            self.n_test = 512
            self.equivalence_n = 300
        self.thresholds = validate_thresholds(self.thresholds)
        if len(self.thresholds) != 2:
            raise ValueError(f"`thresholds` must hold the two thresholds τ_1 < τ_2, got {self.thresholds}.")
        if self.single_threshold is None:
            self.single_threshold = 0.5 * (self.thresholds[0] + self.thresholds[1])
        if self.dim < 2:
            raise ValueError(f"`dim` must be at least 2 (μ and σ use two coordinates), got {self.dim}.")
        if not self.n_pairs or any(n < 2 for n in self.n_pairs):
            raise ValueError(f"`n_pairs` must be a non-empty list of sizes ≥ 2, got {self.n_pairs}.")
        self.n_pairs = sorted(int(n) for n in self.n_pairs)
        if not self.seeds:
            raise ValueError("`seeds` is empty.")
        unknown = [arm for arm in self.arms if arm not in ARMS]
        if unknown or not self.arms:
            raise ValueError(f"`arms` must be a non-empty subset of {list(ARMS)}, got {self.arms}.")
        self.arms = [arm for arm in ARMS if arm in self.arms]
        if self.soft_labels not in SOFT_LABEL_SOURCES:
            raise ValueError(f"`soft_labels` must be one of {SOFT_LABEL_SOURCES}, got {self.soft_labels!r}.")
        if self.soft_labels == "annotators" and self.annotators < 1:
            raise ValueError(f"`annotators` must be ≥ 1, got {self.annotators}.")
        if not self.anchor_lambda > 0:
            raise ValueError(f"`anchor_lambda` must be positive (0 is the no-anchor arm), got {self.anchor_lambda}.")
        if any(not a > 0 for a in self.equivalent_scales):
            raise ValueError(f"`equivalent_scales` must be positive, got {self.equivalent_scales}.")
        if self.equivalence_n is None:
            self.equivalence_n = self.n_pairs[-1]


def regenerating_command(config: SimulationConfig) -> str:
    """The `trl-anchor simulate` command line that reproduces `config` (only non-default flags)."""
    reference = SimulationConfig(quick=config.quick)
    parts = ["trl-anchor simulate"]
    if config.quick:
        parts.append("--quick")
    for f in fields(SimulationConfig):
        value, default = getattr(config, f.name), getattr(reference, f.name)
        # The output directory changes no number; `quick` is already in the command.
        if f.name in ("quick", "output_dir") or value == default:
            continue
        if isinstance(value, list):
            shown = " ".join(str(v) for v in value) or "1"  # `--equivalent_scales 1`: no extra world
        else:
            shown = str(value)
        parts.append(f"--{f.name} {shown}")
    return " ".join(parts)
