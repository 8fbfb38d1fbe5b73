"""What a method is given (:class:`MethodContext`, :class:`TrainingStart`) and what it hands to
the trainer (:class:`Adapted`, with the defaults that plain adapter methods need)."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import torch

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from harness.config import MethodConfig
    from harness.tasks.types import TaskType


@dataclass
class MethodContext:
    """What a method may know about its run besides its own config."""
    target_modules: list[str]     # resolved: method.target_modules or else the model config's
    head_modules: list[str]       # modules trained in full beside the adapters (the new head)
    four_bit: bool                # the base was loaded in 4-bit (bitsandbytes)
    task_type: "TaskType"         # harness.tasks.types.TaskType instance: model_inputs/logits/loss/predict
    task_names: list[str]         # task-id order: the sub-tasks of multi-task data, else [task name]
    device: torch.device
    seed: int
    gradient_checkpointing: bool = False
    max_grad_norm: float = 1.0
    optimizer: str = "adamw"      # trainer.optimizer: see optimizer_class
    norm_modules: list[str] = field(default_factory=list)  # the model's normalization layers


@dataclass
class TrainingStart:
    """Given once to Adapted.before_training, before parameters are counted and the optimizer is made."""
    total_steps: int
    train_batches: "DataLoader"
    device: torch.device


class Adapted:
    """A model ready to train, and the hooks through which a method shapes its training.

    Subclasses override only what their paper changes: the parameter groups (LoRA+), the
    optimizer (LoRA-FA), a hook after every optimizer step (AdaLoRA, Delta-LoRA), the state a
    "best epoch" checkpoint must hold, or extra evaluation variants (DyLoRA's ranks).

    ``self.method`` is the method's own config (:class:`harness.config.MethodConfig` or its
    subclass); ``self.ctx`` is the rest of what it may know about the run (:class:`MethodContext`).
    """

    def __init__(self, model: torch.nn.Module, method_cfg: "MethodConfig", ctx: MethodContext) -> None:
        self.model = model
        self.method = method_cfg
        self.ctx = ctx

    # --- data the method sees besides the model inputs -----------------------------------------
    @property
    def model(self) -> torch.nn.Module:
        return self._model

    @model.setter
    def model(self, model: torch.nn.Module) -> None:
        # Every model this method hands out (merged ones too) takes per-example conditioning
        # fields out of its inputs and passes them to ``condition``.
        self._model = model
        if not vars(model).get("_takes_conditioning", False):
            model.register_forward_pre_hook(self._take_conditioning, with_kwargs=True)
            model._takes_conditioning = True

    def _take_conditioning(self, module, args, kwargs):
        task_ids = kwargs.pop("task_ids", None)
        if task_ids is not None:
            self.condition(task_ids)
        return args, kwargs

    def condition(self, task_ids: torch.Tensor) -> None:
        """Called before each forward on multi-task data with the batch's per-example task ids
        (HyperLoRA generates its adapters from them); other methods ignore them."""

    # --- optimisation -----------------------------------------------------------------------
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def param_groups(self) -> list[dict]:
        m = self.method
        return [{"params": self.trainable_parameters(), "lr": m.lr, "weight_decay": m.weight_decay}]

    def optimizer_class(self) -> type[torch.optim.Optimizer]:
        """The run's optimizer (``trainer.optimizer``), for the method's parameter groups."""
        return optimizer_class(self.ctx.optimizer)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return self.optimizer_class()(self.param_groups())

    def before_training(self, start: TrainingStart) -> None:
        """Called once after the method is built, before its parameters are counted and the
        optimizer is made, with the number of steps training will take (AdaLoRA's rank schedule
        is defined over it) and the training batches (LoRA-drop trains a probe on a sample of
        them and then restructures its adapters)."""

    def extra_loss(self) -> torch.Tensor | None:
        """A term the trainer adds to the task loss at every training step (AdaLoRA's
        orthogonality penalty); None for methods that have none."""
        return None

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Called after every optimizer step with the 1-based global step, while the step's
        gradients are still in place (AdaLoRA scores importance from them)."""

    # --- checkpoints and evaluation ---------------------------------------------------------
    def snapshot(self) -> dict[str, torch.Tensor]:
        """The state that training changes, copied, for restoring the best epoch."""
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    def inference(self) -> contextlib.AbstractContextManager:
        """The setting every evaluation and latency pass runs under (peft's DoRA weight-norm
        cache for DoRA); nothing by default."""
        return contextlib.nullcontext()

    def eval_variants(self) -> Iterator[tuple[str, contextlib.AbstractContextManager]]:
        """Extra settings to evaluate the trained model under (e.g. ranks); none by default."""
        return iter(())

    def details(self) -> dict:
        """Method-specific facts to record with the run (final ranks, shared layers...)."""
        return {}

    # --- measurement ------------------------------------------------------------------------
    def count_parameters(self) -> tuple[int, int]:
        """(trainable, total), counting every stored element once; 4-bit weights count as the
        number of weights they hold, not the bytes that hold them."""
        trainable = sum(p.numel() for p in self.trainable_parameters())
        total = 0
        for p in self.model.parameters():
            n = p.numel()
            quant_state = getattr(p, "quant_state", None)
            if quant_state is not None and hasattr(quant_state, "shape"):
                n = int(torch.Size(quant_state.shape).numel())
            total += n
        return trainable, total

    def save(self, folder: Path) -> int:
        """Save what this method adds to the base model as safetensors; return its size in bytes."""
        self.model.save_pretrained(folder, safe_serialization=True)
        return sum(f.stat().st_size for f in Path(folder).rglob("*.safetensors"))

    def merge(self) -> bool:
        """Fold the adapters into the base weights for inference; False if not applicable."""
        return False


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """torch's AdamW, or bitsandbytes' 8-bit and paged AdamW (QLoRA pairs paged optimizers with a
    4-bit base: optimizer state pages out to CPU memory when the GPU runs short)."""
    if name == "adamw":
        return torch.optim.AdamW
    import bitsandbytes as bnb

    classes = {"adamw_8bit": bnb.optim.AdamW8bit, "paged_adamw_32bit": bnb.optim.PagedAdamW32bit,
               "paged_adamw_8bit": bnb.optim.PagedAdamW8bit}
    if name not in classes:
        raise ValueError(f"unknown optimizer {name!r}; allowed: adamw, {', '.join(classes)}")
    return classes[name]


def folder_size(folder: os.PathLike) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
