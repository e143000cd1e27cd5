"""`AnchorGaussianRewardTrainer`: TRL's `RewardTrainer` for Gaussian reward models with soft labels and anchors."""

import copy
import dataclasses
from functools import partial
from typing import Any

import numpy as np
import torch
from accelerate.logging import get_logger
from accelerate.utils import is_peft_model
from datasets import Dataset, IterableDataset
from transformers import AutoTokenizer, PreTrainedTokenizerBase, set_seed
from trl import RewardTrainer
from trl.data_utils import get_dataset_column_names
from trl.trainer.utils import create_model_from_path, get_config_model_id

from ..anchors import ANCHOR_WEIGHT, warn_if_unidentified
from ..data.provenance import record_training_data
from ..losses import (
    batch_anchor_loss,
    bt_preference_log_probs,
    gaussian_preference_log_probs,
    ordinal_anchor_nll,
    ordinal_log_probs,
    soft_label_nll,
)
from ..models.configuration_gaussian import anchor_scale, gaussian_settings
from ..models.conversion import save_variance_head_with_adapter, to_gaussian, train_variance_head
from ..models.modeling_gaussian import GaussianRewardModel
from ..models.packing import num_real_tokens, padding_free_collator_kwargs, reward_model_inputs
from ..pipelines.cards import write_trainer_model_card
from .anchor_columns import (
    CHOSEN_COUNTS,
    REJECTED_COUNTS,
    SOFT_LABEL,
    anchor_keep_mask,
    check_no_missing_text,
    check_not_empty,
    detect_anchor_form,
    resolve_thresholds,
    standardize_batch,
)
from .anchor_groups import ANCHOR_GROUP_VARIANCE, ANCHOR_OFFSET, AnchorGroups, anchor_mean_std
from .collator import DataCollatorForAnchoredPreference
from .head_init import initialize_heads_from_data
from .head_optimizer import (
    check_head_learning_rate,
    head_parameter_ids,
    resolve_head_learning_rate,
    split_head_groups,
)
from .resume import check_resumed_anchors
from .reward_config import AnchorGaussianRewardConfig
from .reward_metrics import flat_sigma_warning, metrics_from_rows, pair_rows, rewards_from_rows

logger = get_logger(__name__)


class AnchorGaussianRewardTrainer(RewardTrainer):
    """
    Trainer for Gaussian reward models with soft preference labels and anchor labels; a drop-in
    [`trl.RewardTrainer`].

    The model predicts a mean μ and a variance σ² per response. Pairs are fitted with the soft-label probit likelihood
    `P(chosen ≻ rejected) = Φ((μ_c − μ_r − margin) / sqrt(σ_c² + σ_r²))`; anchors (is the latent reward above
    τ_1 < … < τ_K?) add `λ · [L_anchor(chosen) + L_anchor(rejected)]`, which identifies the scale of σ. With
    `reward_type="bt"` the same trainer fits a Bradley–Terry model on the same soft labels (the baseline arm).

    Dataset: TRL's preference format (standard or conversational, explicit or implicit prompt) with the optional
    columns `soft_label` (P(chosen ≻ rejected) ∈ [0, 1], default 1), `margin`, anchors as external scores
    (`chosen_score`/`rejected_score`, thresholded with τ), classes (`chosen_anchor`/`rejected_anchor` ∈ 0..K) or class
    counts (`chosen_anchor_counts`/`rejected_anchor_counts`), and `anchor_weight` (0 for pairs without anchors).

    Example:

    ```python
    >>> from datasets import Dataset
    >>> from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer

    >>> dataset = Dataset.from_dict({
    ...     "prompt": ["Tell a joke."] * 2,
    ...     "chosen": ["Why did the chicken cross the road?", "Knock knock."],
    ...     "rejected": ["No.", "I don't know any."],
    ...     "soft_label": [0.8, 0.6],
    ...     "chosen_score": [1.3, 0.2],
    ...     "rejected_score": [-0.7, -0.1],
    ... })
    >>> trainer = AnchorGaussianRewardTrainer(
    ...     model="Qwen/Qwen2.5-0.5B-Instruct",
    ...     args=AnchorGaussianRewardConfig("out", anchor_thresholds="auto"),
    ...     train_dataset=dataset,
    ... )
    >>> trainer.train()
    ```

    Args:
        model (`str`, [`GaussianRewardModel`], [`~transformers.PreTrainedModel`] or [`~peft.PeftModel`]):
            A model id or path (loaded as a [`GaussianRewardModel`] for `reward_type="gaussian"`, as
            `AutoModelForSequenceClassification` for `"bt"`; `auto_map` remote code with `trust_remote_code=True`),
            or an instantiated sequence-classification model or `PeftModel` with `num_labels=1`. For
            `reward_type="gaussian"` a plain model gets a fresh variance head in place (no weight copy; see
            `trl_anchor.models.conversion`).
        args ([`AnchorGaussianRewardConfig`], *optional*):
            Training configuration; a plain [`trl.RewardConfig`] is upgraded with the defaults of the new fields.
        other arguments:
            As for [`trl.RewardTrainer`] (`data_collator`, `train_dataset`, `eval_dataset`, `processing_class`,
            `compute_metrics`, `callbacks`, `optimizers`, `optimizer_cls_and_kwargs`,
            `preprocess_logits_for_metrics`, `quantization_config`, `peft_config`). A `peft_config` trains what it
            asks for, as in TRL (add `modules_to_save=["score"]` or `task_type="SEQ_CLS"` to train the mean head),
            plus the variance head, which is saved in the adapter file (see `trl_anchor.models.conversion`).
    """

    _tag_names = ["trl", "reward-trainer", "trl-anchor", "uncertainty"]
    _name = "Anchor Gaussian Reward"

    def __init__(
        self,
        model,
        args: AnchorGaussianRewardConfig | None = None,
        data_collator=None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset=None,
        processing_class: PreTrainedTokenizerBase | None = None,
        compute_metrics=None,
        callbacks=None,
        optimizers=(None, None),
        optimizer_cls_and_kwargs=None,
        preprocess_logits_for_metrics=None,
        quantization_config=None,
        peft_config=None,
    ):
        args = _upgrade_args(model, args)
        self._gaussian = args.reward_type == "gaussian"
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")
        for name, dataset in {"train": train_dataset, **_named_eval_sets(eval_dataset)}.items():
            check_not_empty(dataset, name)
        self._anchor_form = detect_anchor_form(train_dataset, "train_dataset")
        self.anchor_thresholds = self._resolve_thresholds(train_dataset, args)
        self._anchor_groups = None  # fitted with the train dataset when `anchor_group_column` is set

        if self._gaussian:
            model, processing_class = self._load_gaussian_model(model, args, processing_class, quantization_config)
            if isinstance(_unwrap(model), GaussianRewardModel):  # else TRL's own num_labels check refuses it below
                _unwrap(model).record_training_settings(**self._anchor_settings(args))
        if processing_class is None:
            processing_class = _load_tokenizer(model, args)
        processing_class = _check_tokenizer(processing_class, args)

        self._eval_rows: list[torch.Tensor] = []
        self._warned_flat_sigma = False
        self.eval_rewards: dict[str, np.ndarray] | None = None
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
            quantization_config=quantization_config,
            peft_config=peft_config,
        )
        record_training_data(self.model, train_dataset, eval_dataset)  # evaluations refuse to score on this data
        if self._gaussian and is_peft_model(self.model):
            train_variance_head(self.model)  # PEFT froze the new head with the base model; it is saved in `_save`
        # Heads created for this run get the multiplied default head rate (BT: a model given by id, as TRL creates it).
        fresh = getattr(_unwrap(self.model), "fresh_heads", None)
        self._fresh_heads = bool(fresh) if self._gaussian else isinstance(model, str)
        if self.anchor_thresholds is not None and isinstance(_unwrap(self.model), GaussianRewardModel):
            groups = self._anchor_groups
            initialize_heads_from_data(self.model, self.train_dataset, self.anchor_thresholds, args, groups)
        # μ₀ that a mean head without a bias could not hold (`head_init`): the anchors read μ + μ₀.
        settings = gaussian_settings(_unwrap(self.model).config) if self._gaussian else {}
        self._anchor_mean_offset = anchor_scale(settings)["mean_offset"]
        deepspeed_plugin = self.accelerator.state.deepspeed_plugin if self.is_deepspeed_enabled else None
        deepspeed_config = deepspeed_plugin.deepspeed_config if deepspeed_plugin else None
        check_head_learning_rate(args.head_learning_rate, optimizers[0], deepspeed_config, self._head_learning_rate())
        if data_collator is None:
            # TRL has resolved the pad token by now; keep its padding settings and add soft labels and anchors.
            self.data_collator = DataCollatorForAnchoredPreference(
                pad_token_id=self.processing_class.pad_token_id,
                pad_to_multiple_of=self.data_collator.pad_to_multiple_of,
                **padding_free_collator_kwargs(args, self.model),
            )

    # ------------------------------------------------------------------------------------------------ model set-up
    def _load_gaussian_model(self, model, args, processing_class, quantization_config):
        if isinstance(model, str):
            model_id = model
            init_kwargs = dict(args.model_init_kwargs or {})
            if quantization_config is not None:
                init_kwargs["quantization_config"] = quantization_config
            if args.distributed_state.distributed_type in ["MULTI_GPU", "DEEPSPEED"]:
                init_kwargs["device_map"] = None  # distributed training requires device_map=None
            init_kwargs.setdefault("trust_remote_code", args.trust_remote_code)
            revision = init_kwargs.get("revision")
            set_seed(args.seed)  # the fresh heads must be reproducible
            model = create_model_from_path(
                model_id, GaussianRewardModel, num_labels=1, variance_floor=args.variance_floor, **init_kwargs
            )
            # The kwargs were consumed here; TRL would otherwise warn that they are ignored for an instance.
            args.model_init_kwargs = None
            if processing_class is None:
                processing_class = AutoTokenizer.from_pretrained(
                    model_id, revision=revision, trust_remote_code=args.trust_remote_code
                )
        elif getattr(model.config, "num_labels", None) == 1:  # TRL's own check refuses other heads
            # A plain sequence-classification model (or the base of a PeftModel) gets a variance head in place.
            to_gaussian(_unwrap(model), args.variance_floor)
        return model, processing_class

    # ---------------------------------------------------------------------------------------------------- anchors
    def _resolve_thresholds(self, train_dataset, args) -> list[float] | None:
        if self._anchor_form is not None and not self._gaussian:
            logger.warning("Anchors are used by `reward_type='gaussian'` only; the BT arm ignores them.")
            return None
        return resolve_thresholds(train_dataset, self._anchor_form, args)

    def _anchor_settings(self, args) -> dict[str, Any]:
        from_percentiles = self._anchor_form == "score" and args.anchor_thresholds in (None, "auto")
        return {
            "reward_type": args.reward_type,
            "anchor_thresholds": self.anchor_thresholds,
            "anchor_form": self._anchor_form,
            "anchor_lambda": args.anchor_lambda if self.anchor_thresholds is not None else None,
            "anchor_fraction": args.anchor_fraction if self.anchor_thresholds is not None else None,
            "anchor_normalization": args.anchor_normalization if self.anchor_thresholds is not None else None,
            "probit_tail": args.probit_tail if self._gaussian else None,
            "anchor_percentiles": args.anchor_percentiles if from_percentiles else None,
        }

    # ---------------------------------------------------------------------------------------------------- dataset
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        dataset = self._standardize_columns(dataset, args, dataset_name)
        size_before = len(dataset) if isinstance(dataset, Dataset) else None
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if size_before is not None and len(dataset) < size_before:
            if len(dataset) == 0:
                raise ValueError(
                    f"All {size_before} {dataset_name} pairs exceed max_length={args.max_length} tokens (prompt + "
                    "response) and would be filtered out; raise `max_length` or shorten the data."
                )
            logger.warning(
                f"{size_before - len(dataset)} of {size_before} {dataset_name} pairs exceed max_length="
                f"{args.max_length} tokens and were filtered out."
            )
        return dataset

    def _standardize_columns(self, dataset, args, dataset_name):
        """Validate soft labels and anchors and rewrite them as `soft_label`, anchor count vectors and weights."""
        columns = get_dataset_column_names(dataset)
        # Pre-tokenized data; TRL renames the legacy `*_input_ids` columns (with a FutureWarning).
        is_processed = any(f"chosen_{ids}" in columns and f"rejected_{ids}" in columns for ids in ("ids", "input_ids"))
        for required in ("chosen", "rejected"):
            if not is_processed and required not in columns:
                raise ValueError(f"The {dataset_name} dataset has no `{required}` column (columns: {columns}).")
        if not is_processed:
            check_no_missing_text(dataset, dataset_name)
        form = detect_anchor_form(dataset, dataset_name) if self.anchor_thresholds is not None else None
        if form is not None and form != self._anchor_form:
            raise ValueError(
                f"The {dataset_name} dataset gives anchors as {form}s but the train dataset as {self._anchor_form}s."
            )
        keep = anchor_keep_mask(dataset, args) if dataset_name == "train" and self.anchor_thresholds else None
        fn_kwargs = {
            "form": form,
            "thresholds": self.anchor_thresholds,
            "has_weight": ANCHOR_WEIGHT in columns,
            "dataset_name": dataset_name,
            "keep": keep,
        }
        map_kwargs = {"batched": True, "with_indices": True, "fn_kwargs": fn_kwargs}
        if isinstance(dataset, Dataset):
            map_kwargs["desc"] = f"Checking soft labels and anchors of {dataset_name} dataset"
        dataset = dataset.map(standardize_batch, **map_kwargs)
        if form is not None and isinstance(dataset, Dataset):
            totals = np.asarray(dataset[CHOSEN_COUNTS]).sum(0) + np.asarray(dataset[REJECTED_COUNTS]).sum(0)
            if dataset_name == "train" and args.anchor_fraction > 0 and not totals.any():
                raise ValueError(
                    f"No train pair has an anchor (every `{ANCHOR_WEIGHT}` is 0 or every anchor column empty), so "
                    "the anchors would fix nothing; fill them in, or drop the anchor columns to train without them."
                )
            warn_if_unidentified(totals)
        if form is not None and args.anchor_group_column is not None:
            if dataset_name == "train":
                self._anchor_groups = AnchorGroups.fit(
                    dataset, args.anchor_group_column, self.anchor_thresholds, args.normalize_anchor_counts
                )
            dataset = self._anchor_groups.add_offsets(dataset, args.anchor_group_column, dataset_name)
        return dataset

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = [
                "chosen_ids", "rejected_ids", "margin", SOFT_LABEL, CHOSEN_COUNTS, REJECTED_COUNTS, ANCHOR_WEIGHT,
                ANCHOR_OFFSET, ANCHOR_GROUP_VARIANCE,
            ]

    # ------------------------------------------------------------------------------------------------ precision
    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if resume_from_checkpoint not in (None, False):
            check_resumed_anchors(self, resume_from_checkpoint)
        try:
            return super().train(resume_from_checkpoint, *args, **kwargs)
        finally:
            self._remove_autocast_wrapper()

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        self._eval_rows = []  # each loop (evaluate or predict) starts afresh
        # Evaluation runs in training's precision whether or not accelerate's wrapper is on the forward.
        with self.accelerator.autocast():
            output = super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
        if not self.is_in_train:
            self._remove_autocast_wrapper()
        if self._eval_rows:
            rows = torch.cat(self._eval_rows).numpy()
            self.eval_rewards = rewards_from_rows(rows)
            metrics = metrics_from_rows(rows, self._anchor_normalization, calibration=True)
            metrics["num_tokens"] = self._total_train_tokens
            output.metrics.update({f"{metric_key_prefix}_{key}": value for key, value in metrics.items()})
        self._eval_rows = []
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # `compute_metrics` and `preprocess_logits_for_metrics` get TRL's logits (μ, shape (2B, 1)); μ and σ² of every
        # pair are in `self.eval_rewards` after the loop.
        if ignore_keys is None:
            ignore_keys = getattr(getattr(self.model, "config", None), "keys_to_ignore_at_inference", None) or []
        return super().prediction_step(model, inputs, prediction_loss_only, [*ignore_keys, "mean", "variance", "std"])

    def _remove_autocast_wrapper(self) -> None:
        # With mixed precision, accelerate wraps the model's forward in autocast and leaves it there; the trained
        # model would then score in bf16 while the saved one scores in float32. Restore the plain forward.
        self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)

    # -------------------------------------------------------------------------------------------------- optimizer
    def create_optimizer(self, model=None):
        user_optimizer = self.optimizer is not None
        optimizer = super().create_optimizer(model)
        head_lr = self._head_learning_rate()
        if head_lr is not None and not user_optimizer:
            split_head_groups(optimizer, head_parameter_ids(_unwrap(self.model)), head_lr)
        return optimizer

    def _head_learning_rate(self) -> float | None:
        return resolve_head_learning_rate(self.args, self._fresh_heads)

    # ------------------------------------------------------------------------------------------------------ logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # TRL's `log` averages and clears the window's metrics; σ's spread is checked on them first, once per run.
        if self.model.training and self._gaussian and not self._warned_flat_sigma:
            message = flat_sigma_warning(self._metrics["train"], self.state.global_step, self.state.max_steps)
            if message is not None:
                logger.warning(message)
                self._warned_flat_sigma = True
        super().log(logs, start_time)

    # ------------------------------------------------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        outputs = model(**reward_model_inputs(inputs), use_cache=False)
        margin = inputs.get("margin")
        soft_label = inputs[SOFT_LABEL]
        # log P(chosen ≻ rejected) and its complement, computed once for the loss and the metrics.
        if self._gaussian:
            mean_c, mean_r = torch.chunk(outputs.mean, 2)
            var_c, var_r = torch.chunk(outputs.variance, 2)
            log_prob = partial(gaussian_preference_log_probs, mean_c, var_c, mean_r, var_r)
            log_p, log_q = log_prob(margin, self.args.probit_tail)
        else:
            mean_c, mean_r = torch.chunk(outputs.logits.squeeze(-1), 2)
            var_c = var_r = None
            log_prob = partial(bt_preference_log_probs, mean_c, mean_r)
            log_p, log_q = log_prob(margin)
        pair_loss = soft_label_nll(log_p, log_q, soft_label)
        loss = pair_loss.mean()

        anchor = None
        if self._gaussian and CHOSEN_COUNTS in inputs:
            anchor = self._anchor_terms(outputs, inputs)
            loss = loss + self.args.anchor_lambda * anchor.pop("loss")
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean((mean_c + mean_r) ** 2)

        with torch.no_grad():
            # Calibration and accuracy use the exact probability of the preference itself: no margin, no tail.
            prob = log_prob(None)[0].exp()
            values = {"chosen_mean": mean_c, "rejected_mean": mean_r, "prob": prob, "soft_label": soft_label,
                      "pair_loss": pair_loss, **(anchor or {})}
            if var_c is not None:
                values.update(chosen_variance=var_c, rejected_variance=var_r)
            self._record_pairs(mode, inputs, pair_rows(values))
        loss = loss.to(torch.float32)
        return (loss, outputs) if return_outputs else loss

    def _anchor_terms(self, outputs, inputs) -> dict[str, torch.Tensor]:
        """The normalised anchor term (`loss`) and, per side, each response's `w · L_anchor`, anchored and correct."""
        thresholds = torch.tensor(self.anchor_thresholds, device=outputs.mean.device)
        counts = torch.cat([inputs[CHOSEN_COUNTS], inputs[REJECTED_COUNTS]])
        weight = inputs[ANCHOR_WEIGHT].repeat(2)
        mean, std = anchor_mean_std(outputs, inputs, self._anchor_mean_offset)
        nll = ordinal_anchor_nll(mean, std, thresholds, counts, self.args.normalize_anchor_counts)
        anchored = ((weight > 0) & (counts.sum(-1) > 0)).reshape(2, -1)
        weighted = (weight.to(nll.dtype) * nll).reshape(2, -1)
        terms = {"loss": batch_anchor_loss(weighted, anchored, self.args.anchor_normalization)}
        with torch.no_grad():
            predicted = ordinal_log_probs(mean, std, thresholds).argmax(-1)
            correct = (predicted == counts.argmax(-1)).reshape(2, -1) & anchored
        for i, side in enumerate(("chosen", "rejected")):
            terms[f"{side}_anchor_loss"] = weighted[i]
            terms[f"{side}_anchored"] = anchored[i]
            terms[f"{side}_anchor_correct"] = correct[i]
        return terms

    def _record_pairs(self, mode, inputs, rows) -> None:
        if mode == "train":
            num_tokens = self.accelerator.gather_for_metrics(num_real_tokens(inputs)).sum().item()
            # TRL ≥ 1.13 corrects for tensor-parallel ranks repeating the batch; TRL 1.12 has no `_tp_size`.
            self._total_train_tokens += num_tokens // getattr(self, "_tp_size", 1)
        rows = self.accelerator.gather_for_metrics(rows)  # one row per pair: the last batch keeps whole pairs
        if mode == "eval":
            self._eval_rows.append(rows.cpu())
            return
        self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        for key, value in metrics_from_rows(rows.cpu().numpy(), self._anchor_normalization, False).items():
            self._metrics["train"][key].append(value)

    @property
    def _anchor_normalization(self) -> str | None:
        return self.args.anchor_normalization if self._gaussian and self.anchor_thresholds is not None else None

    # ------------------------------------------------------------------------------------------------- model card
    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | None = None,
        tags: str | list[str] | None = None,
        license: str | None = None,
        finetuned_from: str | None = None,
        language: str | list[str] | None = None,
    ) -> None:
        """Write the model card (`README.md` in `output_dir`) of a trl-anchor reward model.

        TRL calls this at every checkpoint and `push_to_hub(...)` with its keyword arguments; after
        `trainer.save_model()` call it yourself. Besides TRL's card content, it says what μ and σ are and in which
        units, how the anchors were built and how to use the model, with `license`, `base_model`, `datasets`,
        `pipeline_tag: text-classification` and a `model-index` of the latest evaluation (see
        `trl_anchor.pipelines.cards`).

        Args:
            model_name: name of the model (default: the output directory's name).
            dataset_name: training dataset (a Hub id also goes into the `datasets` metadata).
            tags: extra tags besides trl, reward-model, trl-anchor and uncertainty.
            license: license of the model; default the license on the base model's card.
            finetuned_from: the base model's Hub id, when the model was loaded from a local copy.
            language: language(s) of the training data.
        """
        if not self.is_world_process_zero():
            return
        write_trainer_model_card(
            self, model_name=model_name, dataset_name=dataset_name, tags=tags, license=license,
            finetuned_from=finetuned_from, language=language,
        )

    # ------------------------------------------------------------------------------------------------------ saving
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        model = self.accelerator.unwrap_model(self.model)
        if self._gaussian and is_peft_model(model) and self.args.should_save:
            # PEFT saves adapter weights only; the trained variance head goes into the same adapter file.
            save_variance_head_with_adapter(model, output_dir or self.args.output_dir, state_dict)


# ------------------------------------------------------------------------------------------------------ helpers
def _named_eval_sets(eval_dataset) -> dict:
    return eval_dataset if isinstance(eval_dataset, dict) else {"eval": eval_dataset}


def _unwrap(model):
    return model.get_base_model() if is_peft_model(model) else model


def _upgrade_args(model, args) -> AnchorGaussianRewardConfig:
    if args is None:
        name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
        return AnchorGaussianRewardConfig(f"{str(name).split('/')[-1]}-AnchorGaussianReward")
    if isinstance(args, AnchorGaussianRewardConfig):
        # The trainer (and TRL) set fields, e.g. consumed `model_init_kwargs` or `dispatch_batches` for streamed data:
        # on a copy, with its own accelerator config.
        args = copy.copy(args)
        args.accelerator_config = copy.copy(args.accelerator_config)
        return args
    # A plain `trl.RewardConfig` keeps all its values and gets the defaults of the anchor fields.
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
    return AnchorGaussianRewardConfig(**values)


def _load_tokenizer(model, args):
    model_id = model if isinstance(model, str) else get_config_model_id(model.config)
    revision = (args.model_init_kwargs or {}).get("revision")
    return AutoTokenizer.from_pretrained(model_id, revision=revision, trust_remote_code=args.trust_remote_code)


def _check_tokenizer(tokenizer, args):
    """The tokenizer to train with: the user's, or a copy when it will be changed (an EOS for encoders here; TRL sets
    the pad token, `eos_token` and `chat_template_path` in place), so the user's tokenizer is never modified."""
    if (args.pad_token or tokenizer.pad_token or tokenizer.eos_token) is None:
        raise ValueError(
            f"The tokenizer {type(tokenizer).__name__} has neither a pad token nor an EOS token; reward models pad "
            "batches and read the last non-pad token. Set `tokenizer.pad_token` (e.g. to an existing special token)."
        )
    if (args.eos_token or tokenizer.eos_token) is None:
        if tokenizer.sep_token is None:
            raise ValueError(
                f"The tokenizer {type(tokenizer).__name__} has no EOS token, which TRL appends to every text "
                "response. Set `eos_token` in the config or on the tokenizer."
            )
    # Encoders (BERT, MiniLM) end sequences with [SEP] and have no EOS token; TRL appends the EOS token to text.
    eos_token = args.eos_token or tokenizer.eos_token or tokenizer.sep_token
    pad_token = args.pad_token or tokenizer.pad_token or eos_token
    if (eos_token, pad_token) != (tokenizer.eos_token, tokenizer.pad_token) or args.chat_template_path is not None:
        tokenizer = copy.deepcopy(tokenizer)
    if tokenizer.eos_token is None:
        tokenizer.eos_token = eos_token
    return tokenizer

