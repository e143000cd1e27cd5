"""`head_learning_rate`: the reward heads (mean and variance), which start from scratch on a pretrained backbone, in
param groups of their own. Applied to the optimizer the trainer builds; refused, with an error, where it cannot be
applied (an optimizer passed in `optimizers`, or one defined in the DeepSpeed config) instead of being ignored.
The default head rate (`head_learning_rate_multiplier × learning_rate`) is only warned about there."""

from accelerate.logging import get_logger

logger = get_logger(__name__)


def check_head_learning_rate(
    head_learning_rate, user_optimizer, deepspeed_config: dict | None, default_head_lr: float | None = None
) -> None:
    """Raise a `ValueError` when `head_learning_rate` is set but the trainer does not build the optimizer; warn when
    the default head rate (`head_learning_rate_multiplier`, `default_head_lr`) cannot be applied for that reason."""
    foreign = user_optimizer is not None or "optimizer" in (deepspeed_config or {})
    if head_learning_rate is None:
        if default_head_lr is not None and foreign:
            logger.warning(
                "The optimizer is not built by the trainer: the fresh heads train at its rates, not at "
                f"head_learning_rate_multiplier × learning_rate = {default_head_lr:g}."
            )
        return
    if user_optimizer is not None:
        raise ValueError(
            "`head_learning_rate` cannot be applied to an optimizer passed in `optimizers`: give the reward heads "
            "(`score`/`classifier` and `variance_head`) their own param group in it, or let the trainer build the "
            "optimizer (`optim`, `optimizer_cls_and_kwargs`) and keep `head_learning_rate`."
        )
    if deepspeed_config is not None and "optimizer" in deepspeed_config:
        raise ValueError(
            "`head_learning_rate` cannot be applied to the optimizer defined in the DeepSpeed config: remove its "
            "`optimizer` section (the trainer then builds the optimizer with the head groups and DeepSpeed wraps "
            "it), or unset `head_learning_rate`."
        )


def resolve_head_learning_rate(args, fresh_heads: bool) -> float | None:
    """The heads' learning rate: `head_learning_rate` when set; else `head_learning_rate_multiplier × learning_rate`
    for heads created for this run (they start from scratch while the backbone is pretrained); else `None` (the
    heads keep `learning_rate`)."""
    if args.head_learning_rate is not None:
        return args.head_learning_rate
    if fresh_heads and args.head_learning_rate_multiplier != 1.0:
        return args.head_learning_rate_multiplier * args.learning_rate
    return None


def head_parameter_ids(base) -> set[int]:
    """Ids of the parameters of the mean head (`score`/`classifier`) and the variance head of an unwrapped model."""
    heads = [getattr(base, name, None) for name in ("score", "classifier", "variance_head")]
    return {id(p) for head in heads if head is not None for p in head.parameters()}


def split_head_groups(optimizer, head_ids: set[int], head_lr: float) -> None:
    # Move the heads out of each param group into a twin group (same weight decay) with its own learning rate;
    # the LR scheduler, created afterwards, then scales every group from its own base rate.
    twins = []
    for group in optimizer.param_groups:
        heads = [p for p in group["params"] if id(p) in head_ids]
        if heads:
            group["params"] = [p for p in group["params"] if id(p) not in head_ids]
            twins.append({**{k: v for k, v in group.items() if k != "params"}, "params": heads, "lr": head_lr})
    optimizer.param_groups[:] = [group for group in optimizer.param_groups if group["params"]]
    for twin in twins:
        optimizer.add_param_group(twin)
