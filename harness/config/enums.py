"""The value sets of config fields: a YAML value or an override outside one fails at composition."""
from __future__ import annotations

import enum


class QuantKind(str, enum.Enum):
    nf4 = "nf4"
    fp4 = "fp4"


class Dtype(str, enum.Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Optimizer(str, enum.Enum):
    adamw = "adamw"  # torch.optim.AdamW
    adamw_8bit = "adamw_8bit"  # bitsandbytes' 8-bit AdamW (block-wise quantized state)
    paged_adamw_32bit = "paged_adamw_32bit"  # bitsandbytes, state in paged (unified) memory: CUDA
    paged_adamw_8bit = "paged_adamw_8bit"  # both: QLoRA's pairing with a 4-bit base


class Autocast(str, enum.Enum):
    auto = "auto"  # bf16 where the device supports it
    bf16 = "bf16"
    off = "off"


class DropoutRng(str, enum.Enum):
    torch = "torch"  # torch's own draws (on a CPU other than Intel's, one element at a time)
    numpy = "numpy"  # CPU masks from numpy's PCG64 (harness.training.dropout)


class Strategy(str, enum.Enum):
    ddp = "ddp"  # every process holds the whole model; gradients averaged (DistributedDataParallel)
    fsdp = "fsdp"  # every process holds 1/N of each tensor, gathered block by block (FSDP2)


class FsdpLoad(str, enum.Enum):
    """Who reads an FSDP run's weights (harness.run.fsdp)."""
    auto = "auto"  # first where the run allows it, else every
    first = "first"  # the first process reads them into CPU memory and sends each process its shards
    every = "every"  # every process loads the whole model on its device, then keeps its shards


class FsdpTest(str, enum.Enum):
    """Where an FSDP run is tested after training (harness.run.fsdp)."""
    gathered = "gathered"  # the first process builds the whole model again on its device
    sharded = "sharded"  # every process tests its shards together; the model never whole on a device


class Select(str, enum.Enum):
    final = "final"  # test the weights after the last epoch
    best = "best"  # test the weights of the epoch with the best validation metric


class DeviceKind(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class QuantNeed(str, enum.Enum):
    any = "any"  # runs on a full-precision or a 4-bit base
    required = "required"  # the method is defined on a 4-bit base (QLoRA, QDoRA)
    forbidden = "forbidden"  # cannot train a 4-bit base (full fine-tuning)


class Truncation(str, enum.Enum):
    # The task type's own: head for classification, tail for prompt tasks (where the question is).
    auto = "auto"
    head = "head"  # keep the start of long texts
    tail = "tail"  # keep the end
    head_tail = "head_tail"  # a quarter from the start, the rest from the end


class TrackerMode(str, enum.Enum):
    auto = "auto"  # online when an API key is found, else offline (and says so)
    online = "online"
    offline = "offline"
