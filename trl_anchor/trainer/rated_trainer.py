"""What the trainers of rated data (`MultiAttributeRewardTrainer`, `ImageRewardTrainer`) share on top of
`transformers.Trainer`: evaluation by loss only, TRL-style metric windows (`self._metrics` flushed in `log`), and a
PEFT adapter saved together with the variance head it does not cover."""

import torch
from accelerate.utils import is_peft_model

from ..models.conversion import save_variance_head_with_adapter


def unwrap_peft(model):
    """The model under a PEFT wrapper (the model itself without one)."""
    return model.get_base_model() if is_peft_model(model) else model


class RatedRewardTrainerMixin:
    """Mix in before `transformers.Trainer`; the trainer fills `self._metrics = {"train": ..., "eval": ...}`."""

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = {key: sum(values) / len(values) for key, values in self._metrics[mode].items() if values}
        if mode == "eval":
            metrics = {f"eval_{key}": value for key, value in metrics.items()}
        super().log({**logs, **metrics}, start_time)
        self._metrics[mode].clear()

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        model = self.accelerator.unwrap_model(self.model)
        # PEFT saves the adapter only: a variance head created for this run is added to the adapter file.
        has_variance_head = getattr(unwrap_peft(model), "variance_head", None) is not None
        if has_variance_head and is_peft_model(model) and self.args.should_save:
            save_variance_head_with_adapter(model, output_dir or self.args.output_dir, state_dict)
