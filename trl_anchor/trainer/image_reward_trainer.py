"""`ImageRewardTrainer`: multi-aspect Gaussian (or scalar Bradley–Terry) reward models of (prompt, image) pairs."""

import math
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import AutoProcessor, Trainer, set_seed
from trl.trainer.utils import disable_dropout_in_model

from ..anchor_marginal import class_shares, fit_marginal
from ..losses import ordinal_anchor_nll, soft_bt_loss, soft_probit_loss
from ..models.configuration_gaussian import attribute_names
from ..models.conversion import train_variance_head
from ..models.modeling_image_gaussian import CLIPImageRewardModel, GaussianCLIPImageRewardModel
from ..rewards.image_scoring import _warn_truncation
from .head_init import _copies, _gathered, _inverse_softplus, _reward_head
from .head_optimizer import (
    check_head_learning_rate,
    head_parameter_ids,
    resolve_head_learning_rate,
    split_head_groups,
)
from .image_reward_config import ImageRewardConfig
from .image_reward_data import MISSING, DataCollatorForImageRewards, combine, prepare_image_rows
from .rated_trainer import RatedRewardTrainerMixin, unwrap_peft


class ImageRewardTrainer(RatedRewardTrainerMixin, Trainer):
    """
    Trainer for reward models of text-to-image generations (VisionPrefer-style data: 1–5 ratings of each image on
    several aspects, and image pairs with soft labels derived from them).

    With `reward_type="gaussian"` (default) the model is a [`GaussianCLIPImageRewardModel`]: per aspect a mean μ_a and
    a variance σ²_a. A rating is an ordinal anchor (`trl_anchor.losses.ordinal_anchor_nll`, thresholds at the rating
    midpoints), so μ_a sits on the rating scale and σ_a measures how much raters would disagree about that image. A
    pair with per-aspect soft labels adds, per aspect, the Thurstone likelihood
    `Φ((μ_{c,a} − μ_{r,a}) / sqrt(σ²_{c,a} + σ²_{r,a}))` (`soft_probit_loss`); a pair with only an overall
    `soft_label` is scored on the combined reward `wᵀμ` with variance `Σ_a w_a² σ²_a`. With `reward_type="bt"` the
    same pairs train the VP-Score baseline: a [`CLIPImageRewardModel`] with one scalar reward and the (soft)
    Bradley–Terry loss on the overall label.

    The loss is `pair loss + anchor_lambda × rating loss`, each a `weight`-weighted mean over the batch's pairs and
    rated (image, aspect) entries. Images are decoded and run through the processor in the collator.

    Example:

    ```python
    >>> from trl_anchor.data.vision_prefer import load_vision_prefer
    >>> from trl_anchor.trainer.image_reward_config import ImageRewardConfig
    >>> from trl_anchor.trainer.image_reward_trainer import ImageRewardTrainer

    >>> pairs = load_vision_prefer("visionprefer.jsonl", mode="pairs")  # doctest: +SKIP
    >>> trainer = ImageRewardTrainer(
    ...     "openai/clip-vit-base-patch32", ImageRewardConfig("vp-gaussian"), train_dataset=pairs
    ... )  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP
    ```

    Args:
        model (`str` or [`~transformers.PreTrainedModel`]): a CLIP checkpoint id or path, or a
            `GaussianCLIPImageRewardModel` with the config's aspects (`"gaussian"`) / a `CLIPImageRewardModel` with
            `num_labels=1` (`"bt"`).
        args ([`ImageRewardConfig`], *optional*): training configuration.
        train_dataset ([`~datasets.Dataset`]): rated images or image pairs (see `image_reward_data`).
        eval_dataset ([`~datasets.Dataset`], *optional*): held-out rated images or pairs.
        preference_dataset ([`~datasets.Dataset`], *optional*): image pairs trained together with rated images.
        processing_class: the processor (default: the checkpoint's, `AutoProcessor`).
        peft_config (`peft.PeftConfig`, *optional*): train a PEFT adapter (list `score` in `modules_to_save`); the
            variance head is trained too and saved in the adapter file.
    """

    _tag_names = ["trl", "reward-trainer", "trl-anchor", "uncertainty", "image-reward"]

    def __init__(
        self,
        model,
        args: ImageRewardConfig | None = None,
        train_dataset: Dataset | None = None,
        eval_dataset: Dataset | None = None,
        preference_dataset: Dataset | None = None,
        processing_class=None,
        data_collator=None,
        callbacks=None,
        optimizers=(None, None),
        peft_config=None,
    ):
        args = args if args is not None else ImageRewardConfig("ImageReward")
        if train_dataset is None:
            raise ValueError("`train_dataset` (rated images or image pairs) is required.")
        self._gaussian = args.reward_type == "gaussian"
        self.aspects = list(args.aspects)
        if processing_class is None:
            if not isinstance(model, str):
                raise ValueError("Pass `processing_class` (the processor, e.g. CLIPProcessor) with a model instance.")
            processing_class = AutoProcessor.from_pretrained(model)
        from_checkpoint = isinstance(model, str)
        model = self._load_model(model, args)
        self._max_text_length = _text_length(unwrap_peft(model))
        if args.disable_dropout:
            disable_dropout_in_model(model)
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
            if self._gaussian:
                train_variance_head(model)
        train = combine(*(self._prepare_dataset(d, processing_class, args, name) for d, name in (
            (train_dataset, "train dataset"), (preference_dataset, "preference dataset")) if d is not None))
        if not self._gaussian and not any(v is not None for v in train["rejected_image"]):
            raise ValueError("`reward_type='bt'` trains on image pairs; the train data holds rated images only.")
        if eval_dataset is not None:
            eval_dataset = self._prepare_dataset(eval_dataset, processing_class, args, "eval dataset")
        base = unwrap_peft(model)
        self._fresh_heads = bool(getattr(base, "fresh_heads", None)) if self._gaussian else from_checkpoint
        self._record_settings(base, args)
        if self._gaussian and args.init_heads_from_anchors:
            _init_heads_per_aspect(model, train, args)
        if data_collator is None:
            data_collator = DataCollatorForImageRewards(processing_class, self._max_text_length)
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        super().__init__(
            model=model, args=args, data_collator=data_collator, train_dataset=train, eval_dataset=eval_dataset,
            processing_class=processing_class, callbacks=callbacks, optimizers=optimizers,
        )
        for tag in self._tag_names:
            if hasattr(self.model, "add_model_tags"):
                self.model.add_model_tags(tag)
        plugin = self.accelerator.state.deepspeed_plugin if self.is_deepspeed_enabled else None
        check_head_learning_rate(
            args.head_learning_rate, optimizers[0], plugin.deepspeed_config if plugin else None, self._head_lr()
        )

    # ------------------------------------------------------------------------------------------------ set-up
    def _load_model(self, model, args):
        if isinstance(model, str):
            set_seed(args.seed)  # the fresh heads must be reproducible
            kwargs = dict(args.model_init_kwargs or {})
            if self._gaussian:
                return GaussianCLIPImageRewardModel.from_pretrained(
                    model, aspects=self.aspects, aspect_weights=args.aspect_weights,
                    thresholds=args.rating_thresholds, variance_floor=args.variance_floor, **kwargs,
                )
            return CLIPImageRewardModel.from_pretrained(model, num_labels=1, **kwargs)
        base = unwrap_peft(model)
        if self._gaussian:
            if not isinstance(base, GaussianCLIPImageRewardModel):
                raise ValueError(f"`reward_type='gaussian'` needs a GaussianCLIPImageRewardModel, got {type(base)}.")
            if attribute_names(base.config) != self.aspects:
                raise ValueError(f"The model rates {attribute_names(base.config)}; the config's aspects are "
                                 f"{self.aspects}.")
        elif not isinstance(base, CLIPImageRewardModel) or base.config.num_labels != 1:
            raise ValueError("`reward_type='bt'` needs a CLIPImageRewardModel with num_labels=1 (one scalar reward).")
        return model

    def _prepare_dataset(self, dataset, processing_class, args, name):
        rows = prepare_image_rows(dataset, self.aspects, args.min_rating, args.max_rating, name)
        _warn_truncation(processing_class, rows["prompt"], self._max_text_length)
        return rows

    def _record_settings(self, base, args) -> None:
        settings = {"aspect_weights": args.aspect_weights, "reward_type": args.reward_type,
                    "rating_range": [args.min_rating, args.max_rating], "anchor_lambda": args.anchor_lambda}
        if self._gaussian:
            base.record_training_settings(**settings)
        else:  # the scalar BT arm is a plain model; its config still says how it was trained
            base.config.image_reward = settings

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["prompt", "image", "rejected_image", "ratings", "rejected_ratings",
                                       "soft_label", "soft_labels", "weight"]

    def _head_lr(self) -> float | None:
        return resolve_head_learning_rate(self.args, self._fresh_heads)

    def create_optimizer(self, model=None):
        user_optimizer = self.optimizer is not None
        optimizer = super().create_optimizer(model)
        head_lr = self._head_lr()
        if head_lr is not None and not user_optimizer:
            split_head_groups(optimizer, head_parameter_ids(unwrap_peft(self.model)), head_lr)
        return optimizer

    # ------------------------------------------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        outputs = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
            pixel_values=inputs["pixel_values"].to(unwrap_peft(self.model).dtype),
        )
        rows, pair_index = inputs["weight"].shape[0], inputs["pair_index"]
        weight = inputs["weight"]
        soft_label, soft_labels = inputs["soft_label"], inputs["soft_labels"]
        if self.args.hard_labels:
            soft_label = torch.ones_like(soft_label)
            soft_labels = torch.where(soft_labels.isnan(), soft_labels, torch.sign(soft_labels - 0.5) * 0.5 + 0.5)
        nan = torch.tensor(math.nan, dtype=torch.float64, device=weight.device)
        metrics = {"rating_loss": nan, "pair_loss": nan, "pair_accuracy": nan}
        loss = torch.zeros((), dtype=torch.float64, device=weight.device)
        if self._gaussian:
            mean = outputs.logits.float().reshape(-1, len(self.aspects))
            variance = outputs.variance.reshape(mean.shape)
            rating_loss = self._rating_loss(mean, variance, inputs["ratings"], torch.cat([weight, weight[pair_index]]))
            if rating_loss is not None and self.args.anchor_lambda > 0:
                loss = loss + self.args.anchor_lambda * rating_loss
                metrics["rating_loss"] = rating_loss.detach()
            reward = mean.double() @ torch.tensor(self.args.aspect_weights, dtype=torch.float64, device=mean.device)
        else:
            mean = variance = None
            reward = outputs.logits.reshape(-1).double()
        if pair_index.numel():
            per_pair = self._pair_losses(mean, variance, reward, pair_index, rows, soft_label, soft_labels)
            pair_weight = weight[pair_index]
            pair_loss = (per_pair * pair_weight).sum() / pair_weight.sum().clamp_min(1e-12)
            loss = loss + pair_loss
            correct = (reward[pair_index] > reward[rows:]) == (inputs["soft_label"] > 0.5)
            metrics.update(pair_loss=pair_loss.detach(),
                           pair_accuracy=correct[inputs["soft_label"] != 0.5].double().mean())
        self._record(mode, metrics, variance)
        loss = loss.float()
        return (loss, outputs) if return_outputs else loss

    def _rating_loss(self, mean, variance, ratings, weight):
        rated = ratings != MISSING
        if not rated.any():
            return None
        thresholds = torch.tensor(self.args.rating_thresholds, device=mean.device)
        classes = (ratings - self.args.min_rating).clamp_min(0)
        counts = F.one_hot(classes, thresholds.numel() + 1) * rated.unsqueeze(-1)
        nll = ordinal_anchor_nll(mean, variance.sqrt(), thresholds, counts)  # (images, A), zero where unrated
        entry_weight = weight.unsqueeze(-1) * rated
        return (nll * entry_weight).sum() / entry_weight.sum().clamp_min(1e-12)

    def _pair_losses(self, mean, variance, reward, pair_index, rows, soft_label, soft_labels):
        if not self._gaussian:
            return soft_bt_loss(reward[pair_index], reward[rows:], soft_label)
        weights = torch.tensor(self.args.aspect_weights, dtype=torch.float64, device=mean.device)
        reward_variance = variance.double() @ weights**2  # aspects independent given the image
        overall = soft_probit_loss(reward[pair_index], reward_variance[pair_index], reward[rows:],
                                   reward_variance[rows:], soft_label)
        labelled = ~soft_labels.isnan()
        per_aspect = soft_probit_loss(mean[pair_index], variance[pair_index], mean[rows:], variance[rows:],
                                      soft_labels.nan_to_num(0.5))
        per_aspect = (per_aspect * labelled).sum(-1) / labelled.sum(-1).clamp_min(1)
        return torch.where(labelled.any(-1), per_aspect, overall)

    def _record(self, mode, metrics, variance) -> None:
        gather = self.accelerator.gather  # every process gathers the same keys (NaN where its batch has none)
        for key, value in metrics.items():
            gathered = gather(value.reshape(1).to(torch.float64))
            if not torch.isnan(gathered).all():
                self._metrics[mode][key].append(gathered.nanmean().item())
        if variance is not None:
            sigma = gather(variance.detach().sqrt().mean(0, keepdim=True).double()).mean(0)
            for name, value in zip(self.aspects, sigma.tolist(), strict=True):
                self._metrics[mode][f"sigma/{name}"].append(value)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """As `Trainer.evaluate`; a rated-images or pairs dataset passed here is prepared like the train data, and the
        returned metrics include the logged ones (pair accuracy, σ per aspect)."""
        if isinstance(eval_dataset, Dataset) and "rejected_ratings" not in eval_dataset.column_names:
            eval_dataset = self._prepare_dataset(eval_dataset, self.processing_class, self.args, "eval dataset")
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        logged = self.state.log_history[-1] if self.state.log_history else {}
        return {**{k: v for k, v in logged.items() if k.startswith(f"{metric_key_prefix}_")}, **metrics}


def _text_length(base) -> int:
    return base.config.text_config.max_position_embeddings


def _init_heads_per_aspect(model, train: Dataset, args) -> None:
    """Start fresh heads, per aspect, at the N(μ₀_a, σ₀_a²) whose class shares equal the train ratings' (mean and
    variance weights 0, biases μ₀_a and softplus⁻¹(σ₀_a² − floor)), as `head_init` does for one reward."""
    base = unwrap_peft(model)
    mean_head = _reward_head(base)
    if getattr(base, "fresh_heads", set()) != {"mean", "variance"} or not any(
        p.requires_grad for p in mean_head.parameters()
    ):
        return  # loaded heads are kept, and a frozen mean head zeroed could never move
    ratings = np.concatenate([np.asarray(train["ratings"]), np.asarray(train["rejected_ratings"])])
    rejected_weight = np.where([image is not None for image in train["rejected_image"]], train["weight"], 0.0)
    weights = np.concatenate([np.asarray(train["weight"]), rejected_weight])
    num_classes = len(args.rating_thresholds) + 1
    starts = []
    for a in range(len(args.aspects)):
        rated = ratings[:, a] != MISSING
        if not (rated & (weights > 0)).any():
            return  # an aspect without ratings has no base rate: the heads keep their created values
        counts = np.eye(num_classes)[ratings[rated, a] - args.min_rating]
        # Half a pseudo-rating per class: a class nobody used (ratings only at the ends, say) would otherwise pin
        # the fitted μ₀ or σ₀ at ±∞; the cap keeps σ₀ within the span of the thresholds all the same.
        n = int(rated.sum())
        shares = (class_shares(counts, weights[rated]) * n + 0.5) / (n + 0.5 * num_classes)
        mean, std = fit_marginal(shares, args.rating_thresholds)
        starts.append((mean, min(std, args.rating_thresholds[-1] - args.rating_thresholds[0])))
    floor = base.variance_head.variance_floor
    means = torch.tensor([m for m, _ in starts])
    variance_bias = torch.tensor([_inverse_softplus(max(s * s - floor, floor)) for _, s in starts])
    heads = _copies(mean_head), _copies(base.variance_head)
    with _gathered([p for group in heads for head in group for p in head.parameters()]), torch.no_grad():
        for head in heads[0]:
            head.weight.zero_()
            head.bias.copy_(means)
        for head in heads[1]:
            head.weight.zero_()
            head.bias.copy_(variance_bias)
    base.fresh_heads = set()
    base.record_training_settings(initial_mean=means.tolist(), initial_std=[s for _, s in starts])
