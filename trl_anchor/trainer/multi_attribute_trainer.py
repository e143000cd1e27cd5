"""`MultiAttributeRewardTrainer`: Gaussian reward models with one (μ, σ) per rated attribute (HelpSteer2 / SteerLM)."""

import copy
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, set_seed
from trl.trainer.utils import disable_dropout_in_model

from ..losses import (
    bt_preference_log_probs,
    gaussian_preference_log_probs,
    ordinal_anchor_nll,
    ordinal_log_probs,
    soft_label_nll,
)
from ..models.configuration_gaussian import ATTRIBUTE_CONFIG_KEY, attribute_names
from ..models.conversion import to_gaussian, train_variance_head
from ..models.modeling_gaussian import GaussianRewardModel
from ..models.packing import padding_free_collator_kwargs, reward_model_inputs
from .head_optimizer import (
    check_head_learning_rate,
    head_parameter_ids,
    resolve_head_learning_rate,
    split_head_groups,
)
from .multi_attribute_config import MultiAttributeRewardConfig
from .multi_attribute_data import (
    MISSING,
    DataCollatorForRatings,
    auto_thresholds,
    combine,
    prepare_pairs,
    prepare_rated,
)
from .rated_trainer import RatedRewardTrainerMixin, unwrap_peft


class MultiAttributeRewardTrainer(RatedRewardTrainerMixin, Trainer):
    """
    Trainer for multi-attribute reward models on rating data such as HelpSteer2 (0–4 ratings of helpfulness,
    correctness, coherence, complexity, verbosity), with an optional pairwise term on the combined reward.

    With `loss_type="ordinal"` (default) the model is a multi-attribute [`GaussianRewardModel`] (μ, σ² ∈ R^A) and each
    rating is an ordinal anchor: with thresholds τ_{a,1} < … < τ_{a,K}, `P(rating_a = j) = Φ((μ_a − τ_{a,j})/σ_a) −
    Φ((μ_a − τ_{a,j+1})/σ_a)` (`trl_anchor.losses.ordinal_anchor_nll`, the scalar trainer's anchor likelihood), so μ_a
    and σ_a (how much annotators would disagree on attribute a) are identified from the ratings alone. With
    `loss_type="mse"` the same data trains the NeMo-Aligner baseline: a plain `...ForSequenceClassification` with
    `num_labels = A` regressing each rating (μ only). Missing ratings (None) are skipped and counted.

    With a `preference_dataset` (`prompt`, `chosen`, `rejected`, optional `soft_label`) the loss adds
    `pairwise_lambda ×` the soft-label likelihood of the combined reward `r = wᵀμ`. Treating the attributes as
    independent given the response, `Var(r) = Σ_a w_a² σ_a²` and `P(chosen ≻ rejected) = Φ((r_c − r_r)/sqrt(Var(r_c) +
    Var(r_r)))`; the MSE arm uses Bradley–Terry on r. Correlated attribute noise is not modelled.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> from trl_anchor import MultiAttributeRewardConfig, MultiAttributeRewardTrainer

    >>> ratings = Dataset.from_dict({
    ...     "prompt": ["Explain DNS."] * 2, "response": ["DNS maps names to IP addresses.", "It's a thing."],
    ...     "helpfulness": [4, 1], "correctness": [4, 2], "coherence": [4, 3], "complexity": [2, 0],
    ...     "verbosity": [1, None],
    ... })
    >>> trainer = MultiAttributeRewardTrainer(
    ...     model="Qwen/Qwen2.5-0.5B-Instruct", args=MultiAttributeRewardConfig("out"), train_dataset=ratings
    ... )
    >>> trainer.train()
    ```

    Args:
        model (`str` or [`~transformers.PreTrainedModel`]): a model id or path, or a sequence-classification model
            (a [`GaussianRewardModel`] or a plain one with `num_labels = A`, which gets variance heads in place).
        args ([`MultiAttributeRewardConfig`], *optional*): training configuration.
        train_dataset ([`~datasets.Dataset`]): rated responses: `prompt` (optional), `response` and one column per
            attribute with integer ratings `0 … max_rating` or None.
        eval_dataset ([`~datasets.Dataset`], *optional*): held-out rated responses, same format.
        preference_dataset ([`~datasets.Dataset`], *optional*): preference pairs for the combined-reward term.
        processing_class: the tokenizer (default: the model's).
        peft_config (`peft.PeftConfig`, *optional*): train a PEFT adapter; the variance heads are trained too and
            saved in the adapter file.
    """

    _tag_names = ["trl", "reward-trainer", "trl-anchor", "uncertainty", "multi-attribute"]

    def __init__(
        self,
        model,
        args: MultiAttributeRewardConfig | None = None,
        train_dataset: Dataset | None = None,
        eval_dataset: Dataset | None = None,
        preference_dataset: Dataset | None = None,
        processing_class=None,
        data_collator=None,
        callbacks=None,
        optimizers=(None, None),
        peft_config=None,
    ):
        if args is None:
            args = MultiAttributeRewardConfig("MultiAttributeReward")
        if train_dataset is None:
            raise ValueError("`train_dataset` (rated responses) is required.")
        self._ordinal = args.loss_type == "ordinal"
        self.attributes = list(args.attributes)
        processing_class = _tokenizer(model, processing_class)
        self._created_model = isinstance(model, str)  # the trainer creates the heads of a model given by id
        model = self._load_model(model, args)
        if args.disable_dropout:
            disable_dropout_in_model(model)
        if model.config.pad_token_id is None:  # decoders pool at the last non-pad token: they must know the pad id
            model.config.pad_token_id = processing_class.pad_token_id
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
            if self._ordinal:
                train_variance_head(model)

        train = self._prepare_dataset(train_dataset, processing_class, args, "train dataset")
        self.rating_thresholds = self._resolve_thresholds(train, args)
        if preference_dataset is not None:
            pairs = prepare_pairs(
                preference_dataset, processing_class, len(self.attributes), args.max_length, "preference dataset"
            )
            train = combine(train, pairs)
        if eval_dataset is not None:
            eval_dataset = self._prepare_dataset(eval_dataset, processing_class, args, "eval dataset")
        self._record_settings(unwrap_peft(model), args)
        if data_collator is None:
            data_collator = DataCollatorForRatings(
                processing_class.pad_token_id, **padding_free_collator_kwargs(args, model)
            )
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        for tag in self._tag_names:
            if hasattr(self.model, "add_model_tags"):
                self.model.add_model_tags(tag)
        deepspeed_plugin = self.accelerator.state.deepspeed_plugin if self.is_deepspeed_enabled else None
        check_head_learning_rate(
            args.head_learning_rate,
            optimizers[0],
            deepspeed_plugin.deepspeed_config if deepspeed_plugin else None,
            self._head_learning_rate(),
        )

    # ------------------------------------------------------------------------------------------------ set-up
    def _load_model(self, model, args):
        attributes = self.attributes
        if isinstance(model, str):
            kwargs = dict(args.model_init_kwargs or {})
            set_seed(args.seed)  # the fresh heads must be reproducible
            if self._ordinal:
                return GaussianRewardModel.from_pretrained(
                    model, attributes=attributes, variance_floor=args.variance_floor, **kwargs
                )
            return AutoModelForSequenceClassification.from_pretrained(
                model, num_labels=len(attributes), problem_type="regression",
                id2label=dict(enumerate(attributes)), label2id={a: i for i, a in enumerate(attributes)}, **kwargs,
            )
        base = unwrap_peft(model)
        if base.config.num_labels != len(attributes):
            raise ValueError(
                f"The model has num_labels={base.config.num_labels} but {len(attributes)} attributes {attributes}."
            )
        named = attribute_names(base.config) if isinstance(base, GaussianRewardModel) else None
        if named is not None and named != attributes:
            raise ValueError(f"The model rates {named} but the config's `attributes` are {attributes}.")
        if self._ordinal and not isinstance(base, GaussianRewardModel):
            to_gaussian(base, args.variance_floor, attributes)
        return model

    def _prepare_dataset(self, dataset, processing_class, args, name):
        return prepare_rated(dataset, processing_class, self.attributes, args.max_rating, args.max_length, name)

    def _resolve_thresholds(self, train: Dataset, args) -> list[list[float]] | None:
        if not self._ordinal:
            return None
        if args.rating_thresholds == "midpoints":
            return [[k - 0.5 for k in range(1, args.max_rating + 1)] for _ in self.attributes]
        if args.rating_thresholds == "auto":
            return auto_thresholds(np.asarray(train["ratings"]), self.attributes, args.max_rating)
        return args.rating_thresholds

    def _record_settings(self, model, args) -> None:
        settings = {
            "attributes": self.attributes,
            "attribute_weights": args.attribute_weights,
            "attribute_thresholds": self.rating_thresholds,
            "max_rating": args.max_rating,
            "loss_type": args.loss_type,
        }
        if isinstance(model, GaussianRewardModel):
            model.record_training_settings(reward_type="gaussian", **settings)
        else:  # the MSE arm is a plain transformers model; its config still says how to combine the attributes
            setattr(model.config, ATTRIBUTE_CONFIG_KEY, settings)

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["input_ids", "rejected_ids", "ratings", "soft_label"]

    def create_optimizer(self, model=None):
        user_optimizer = self.optimizer is not None
        optimizer = super().create_optimizer(model)
        head_lr = self._head_learning_rate()
        if head_lr is not None and not user_optimizer:
            split_head_groups(optimizer, head_parameter_ids(unwrap_peft(self.model)), head_lr)
        return optimizer

    def _head_learning_rate(self) -> float | None:
        # Heads created for this run get the multiplied rate: a Gaussian model's record of its fresh heads, else
        # (the MSE arm) whether the trainer built the model from an id.
        base = unwrap_peft(self.model)
        fresh = getattr(base, "fresh_heads", None) if isinstance(base, GaussianRewardModel) else self._created_model
        return resolve_head_learning_rate(self.args, bool(fresh))

    # ------------------------------------------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        outputs = model(**reward_model_inputs(inputs), use_cache=False)
        ratings = inputs["ratings"]
        rows, num_attributes = ratings.shape
        mean = outputs.logits.reshape(outputs.logits.shape[0], num_attributes).float()
        variance = outputs.variance.reshape(mean.shape) if self._ordinal else None
        rated = ratings != MISSING
        if self._ordinal:
            per_rating = self._ordinal_nll(mean[:rows], variance[:rows], ratings)
        else:
            per_rating = (mean[:rows].double() - ratings.clamp_min(0)) ** 2 * rated
        loss = per_rating.sum() / rated.sum().clamp_min(1)
        # Every process gathers the same keys (collectives must match), NaN where its batch has no pairs.
        nan = torch.tensor(float("nan"), device=loss.device, dtype=loss.dtype)
        metrics = {"rating_loss": loss.detach(), "pair_loss": nan, "pair_accuracy": nan}
        pair_index = inputs["pair_index"]
        if self.args.pairwise_lambda > 0 and pair_index.numel():
            pair_loss, accuracy = self._pair_terms(mean, variance, pair_index, inputs["soft_label"], rows)
            loss = loss + self.args.pairwise_lambda * pair_loss
            metrics.update(pair_loss=pair_loss.detach(), pair_accuracy=accuracy)
        variance = None if variance is None else variance[:rows].detach()
        self._record(mode, metrics, mean[:rows].detach(), variance, ratings)
        loss = loss.float()
        return (loss, outputs) if return_outputs else loss

    def _ordinal_nll(self, mean, variance, ratings):
        thresholds = torch.tensor(self.rating_thresholds, device=mean.device)  # (A, K)
        counts = F.one_hot(ratings.clamp_min(0), thresholds.shape[1] + 1) * (ratings != MISSING).unsqueeze(-1)
        return ordinal_anchor_nll(mean, variance.sqrt(), thresholds, counts)  # (B, A); zero where unrated

    def _pair_terms(self, mean, variance, pair_index, soft_label, rows):
        weights = torch.tensor(self.args.attribute_weights, device=mean.device, dtype=mean.dtype)
        reward = mean @ weights
        chosen, rejected = reward[pair_index], reward[rows:]
        if self._ordinal:
            reward_variance = variance @ weights**2  # attributes independent given the response
            log_p, log_q = gaussian_preference_log_probs(chosen, reward_variance[pair_index], rejected,
                                                         reward_variance[rows:])
        else:
            log_p, log_q = bt_preference_log_probs(chosen, rejected)
        pair_loss = soft_label_nll(log_p, log_q, soft_label).mean()
        accuracy = ((chosen > rejected).double() == (soft_label > 0.5).double()).double()[soft_label != 0.5].mean()
        return pair_loss, accuracy.detach()

    def _record(self, mode, metrics, mean, variance, ratings) -> None:
        gather = self.accelerator.gather  # per-process sums and means, one row each
        for key, value in metrics.items():
            gathered = gather(value.reshape(1).to(torch.float64))
            if not torch.isnan(gathered).all():
                self._metrics[mode][key].append(gathered.nanmean().item())
        rated = ratings != MISSING
        if self._ordinal:
            thresholds = torch.tensor(self.rating_thresholds, device=mean.device)
            predicted = ordinal_log_probs(mean, variance.sqrt(), thresholds).argmax(-1)
        else:
            predicted = mean.round().clamp(0, self.args.max_rating).long()
        hits, counts = gather(((predicted == ratings) & rated).sum(0)), gather(rated.sum(0))
        hits, counts = hits.reshape(-1, len(self.attributes)).sum(0), counts.reshape(-1, len(self.attributes)).sum(0)
        for a, name in enumerate(self.attributes):
            if counts[a] > 0:
                self._metrics[mode][f"rating_accuracy/{name}"].append((hits[a] / counts[a]).item())
            if self._ordinal:
                sigma = gather(variance[:, a].sqrt().mean().reshape(1)).mean()
                self._metrics[mode][f"sigma/{name}"].append(sigma.item())


def _tokenizer(model, tokenizer):
    """The tokenizer to train with: a copy given a pad token (the EOS token, as TRL does) and, for encoders without
    an EOS token, the [SEP] token as EOS; the caller's tokenizer is never modified."""
    if tokenizer is None:
        if not isinstance(model, str):
            raise ValueError("Pass `processing_class` (the tokenizer) with an instantiated model.")
        tokenizer = AutoTokenizer.from_pretrained(model)
    eos = tokenizer.eos_token or tokenizer.sep_token
    pad = tokenizer.pad_token or eos
    if eos is None or pad is None:
        raise ValueError(f"The tokenizer {type(tokenizer).__name__} has neither an EOS/[SEP] nor a pad token.")
    if (eos, pad) != (tokenizer.eos_token, tokenizer.pad_token):
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.eos_token, tokenizer.pad_token = eos, pad
    return tokenizer
