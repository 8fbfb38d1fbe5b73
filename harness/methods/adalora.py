"""AdaLoRA (Zhang et al. 2023): SVD-shaped adapters P·Λ·Q whose ranks are pruned during training.

Each adapted weight starts at rank ``init_r``; after a warm-up, peft's rank allocator scores every
singular triplet by a smoothed sensitivity |w·∇w| and zeroes the least important ones until the
budget reaches ``r`` (the target *average* rank) per module, then trains the survivors.

That allocation only happens if ``update_and_allocate`` runs after every optimizer step, with the
gradients still in place; without it AdaLoRA silently trains as a fixed-rank LoRA. The schedule
(warm-up, pruning, final phase) is defined over the run's total step count, which only the trainer
knows: ``before_training`` sets it.

The orthogonality penalty ‖PᵀP−I‖ + ‖QQᵀ−I‖ is added by peft only inside the model's own loss,
when labels are passed to the model; the harness's trainer computes the task loss itself and
never passes labels, so ``extra_loss`` returns ``orth_reg_weight`` × the penalty, computed as
peft's ``AdaLoraModel.forward`` computes it, and the trainer adds it to the task loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from peft import AdaLoraConfig, get_peft_model
from peft.utils.integrations import gather_params_ctx

from harness.config import MethodConfig, check, positive_int, register_method_schema
from harness.methods.spec import register_method
from harness.methods.base import Adapted, MethodContext, TrainingStart
from harness.methods.lora import prepare_base


@dataclass
class AdaLoraMethodConfig(MethodConfig):
    # method.r is the target average rank; every module starts at init_r.
    init_r: int = 12
    # Fractions of the total steps spent before pruning starts and after it ends.
    tinit_ratio: float = 0.1
    tfinal_ratio: float = 0.3
    delta_t: int = 10  # steps between two reallocations during the pruning phase
    beta1: float = 0.85  # EMA of the sensitivity
    beta2: float = 0.85  # EMA of its uncertainty
    orth_reg_weight: float = 0.1  # weight of the ‖PᵀP−I‖ + ‖QQᵀ−I‖ penalty

    @property
    def unshardable(self) -> Optional[str]:
        return ("its rank allocator prunes each layer's singular values from the whole tensors, which FSDP "
                "splits over the processes")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(not self.use_dora, "method=adalora cannot use DoRA (peft's AdaLoRA has no magnitude "
                                 "vector): set method.use_dora=false")
        positive_int("method.init_r", self.init_r)
        check(self.init_r > self.r, f"method.init_r must be > method.r (the target rank: AdaLoRA "
                                    f"prunes from init_r down to r), got init_r={self.init_r}, "
                                    f"r={self.r}")
        check(0 <= self.tinit_ratio and 0 <= self.tfinal_ratio
              and self.tinit_ratio + self.tfinal_ratio < 1,
              "method.tinit_ratio and method.tfinal_ratio must be >= 0 and sum to less than 1, got "
              f"{self.tinit_ratio} and {self.tfinal_ratio}")
        positive_int("method.delta_t", self.delta_t)
        check(0 < self.beta1 < 1 and 0 < self.beta2 < 1, "method.beta1 and method.beta2 must be in (0, 1)")
        check(math.isfinite(self.orth_reg_weight) and self.orth_reg_weight >= 0,
              f"method.orth_reg_weight must be a finite number >= 0, got {self.orth_reg_weight}")


register_method_schema("adalora", AdaLoraMethodConfig)


def module_ranks(rank_pattern: dict) -> dict[str, int]:
    """{adapted module: kept rank} from peft's rank pattern ({'<module>.lora_E[.adapter]': mask})."""
    return {name.split(".lora_E")[0].removeprefix("base_model.model."): int(sum(mask))
            for name, mask in rank_pattern.items()}


def orthogonal_penalty(adalora_model) -> torch.Tensor | float:
    """The mean over the trainable adapter's matrices of ‖QQᵀ−I‖_F (Q: each ``lora_A``) and
    ‖PᵀP−I‖_F (P: each ``lora_B``), as peft's ``AdaLoraModel.forward`` computes it before adding
    ``orth_reg_weight`` × it to the model's loss (``adalora_model``: the ``AdaLoraModel``, i.e.
    ``peft_model.base_model``)."""
    adapter = adalora_model.trainable_adapter_name
    regu_loss, num_param = 0, 0
    for n, p in adalora_model.model.named_parameters():
        if ("lora_A" in n or "lora_B" in n) and adapter in n:
            if p.shape == torch.Size([0]):
                with gather_params_ctx(p, fwd_module=adalora_model):
                    para_cov = p @ p.T if "lora_A" in n else p.T @ p
            else:
                para_cov = p @ p.T if "lora_A" in n else p.T @ p
            eye = torch.eye(*para_cov.size(), out=torch.empty_like(para_cov))
            eye.requires_grad = False
            num_param += 1
            regu_loss += torch.norm(para_cov - eye, p="fro")
    return regu_loss / num_param if num_param > 0 else 0


class AdaLoraAdapted(Adapted):
    def __init__(self, model, method, ctx: MethodContext) -> None:
        super().__init__(model, method, ctx)
        # Kept apart from the model, which merge() replaces by a plain one.
        self.peft_config: AdaLoraConfig = model.peft_config["default"]
        self.allocator = model.base_model.rankallocator
        self.total_steps: int | None = None
        self.budget_history: list[tuple[int, int]] = []  # (step, total kept rank) when it changes

    def before_training(self, start: TrainingStart) -> None:
        m, c, total_steps = self.method, self.peft_config, start.total_steps
        c.total_step = total_steps
        c.tinit = math.floor(m.tinit_ratio * total_steps)
        c.tfinal = math.floor(m.tfinal_ratio * total_steps)
        self.total_steps = total_steps

    def extra_loss(self) -> torch.Tensor | None:
        """``orth_reg_weight`` × the orthogonality penalty (None when the weight is 0)."""
        weight = self.peft_config.orth_reg_weight
        if weight == 0:
            return None
        penalty = orthogonal_penalty(self.model.base_model)
        return None if isinstance(penalty, (int, float)) else weight * penalty

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        if self.total_steps != total_steps:
            raise RuntimeError("AdaLoRA's schedule was set for "
                               f"{self.total_steps} steps but training runs {total_steps}")
        self.model.base_model.update_and_allocate(step)
        ranks = self.ranks()
        total = sum(ranks.values()) if ranks else self.initial_budget()
        if not self.budget_history or self.budget_history[-1][1] != total:
            self.budget_history.append((step, total))

    def initial_budget(self) -> int:
        return self.allocator.init_bgt

    def ranks(self) -> dict[str, int]:
        """Kept rank of each adapted module (empty before the first reallocation)."""
        return module_ranks(self.peft_config.rank_pattern or {})

    def details(self) -> dict:
        return {"adalora_final_ranks": self.ranks(), "adalora_initial_budget": self.allocator.init_bgt,
                "adalora_target_budget": self.allocator.target_bgt,
                "adalora_budget_history": self.budget_history,
                "adalora_schedule": {"tinit": self.peft_config.tinit, "tfinal": self.peft_config.tfinal,
                                     "total_step": self.peft_config.total_step}}

    def merge(self) -> bool:
        if self.ctx.four_bit:  # peft's AdaLoRA layer on a bitsandbytes 4-bit base cannot merge
            return False
        self.model = self.model.merge_and_unload()
        return True


@register_method("adalora", four_bit=True)
def build(model, m: AdaLoraMethodConfig, ctx: MethodContext) -> Adapted:
    config = AdaLoraConfig(
        init_r=m.init_r, target_r=m.r, lora_alpha=m.alpha, lora_dropout=m.dropout,
        deltaT=m.delta_t, beta1=m.beta1, beta2=m.beta2, orth_reg_weight=m.orth_reg_weight,
        # The real schedule is set by before_training, once the step count is known.
        total_step=1, tinit=0, tfinal=0,
        target_modules=list(ctx.target_modules), modules_to_save=list(ctx.head_modules),
        task_type=ctx.task_type.peft_task_type)
    return AdaLoraAdapted(get_peft_model(prepare_base(model, ctx), config), m, ctx)
