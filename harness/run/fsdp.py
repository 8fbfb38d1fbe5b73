"""FSDP runs (``trainer.strategy=fsdp``): who reads the weights, sharding, and the model back whole.

The model is sharded with PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``, what
accelerate's FSDP2 plugin applies on GPUs): each transformer block (the model's
``_no_split_modules``) and then the whole model become units whose every tensor is split in N
along its first dimension.

Who reads the weights (``trainer.fsdp_load``), as accelerate's ``cpu_ram_efficient_loading``
does it:

- ``first``: only the first process reads them, into CPU memory, and builds the method on them.
  The others build the same model and method on PyTorch's meta device (shapes, no memory, nothing
  read). Every process then moves its model to the meta device, shards it, and receives its
  shards from the first on its own device (``distribute_tensor`` scatters each tensor from the
  first process); the buffers kept out of the state dict (position ids, rotary frequencies) are
  sent too. No process but the first ever holds the whole model, and none holds it on its device.
- ``every``: every process loads the whole model on its device and shards it there (a peak of
  one whole model per device). Needed by 4-bit bases (bitsandbytes' 4-bit weights cannot be
  built on the meta device, so accelerate does not load them from one process either) and by
  methods whose "before training" hook passes data through the weights (EVA, CorDA, LoRA-drop).
- ``auto`` (default): ``first`` where the run allows it, else ``every``.

After training (``trainer.fsdp_test``):

- ``gathered`` (default): the full trained state is gathered on the first process, which builds
  the model again on its device as the run built it and loads that state; testing and measuring
  (latency, merged latency, generation speed, the adapter's size) see an ordinary model, as in a
  one-process run. The whole model must then fit on one device.
- ``sharded``: every process runs the test split through the sharded model together (as the
  validation after each epoch does), so no device ever holds the whole model; then the first
  process gathers the trained state into a model built again in CPU memory, only to save the
  adapter (its size is recorded). Latency and generation speed are not measured (null): a sharded
  forward pass is not what serving costs, and the CPU copy is not on the device.
"""
from __future__ import annotations

import torch

META = torch.device("meta")


def loading(cfg) -> str | None:
    """``first`` or ``every`` for an FSDP run (``trainer.fsdp_load``, ``auto`` resolved); None
    for another run."""
    if cfg.trainer.strategy.value != "fsdp":
        return None
    chosen = cfg.trainer.fsdp_load.value
    if chosen != "auto":
        return chosen
    return "every" if cfg.fsdp_every_process_loads else "first"


def build(build_fn, cfg, kind, num_labels: int, device: torch.device, first: bool, main: bool):
    """This process's model and method (``build_fn``: :func:`harness.run.pipeline.build`): with
    ``first`` loading, the first process's in CPU memory and the others' on the meta device (a
    method that cannot be built there is built in CPU memory, its values replaced all the same);
    else the whole model on ``device``. Also the device its "before training" hook runs on."""
    if not first:
        return (*build_fn(cfg, kind, num_labels, device), device)
    cpu = torch.device("cpu")
    if not main:
        try:
            return (*build_fn(cfg, kind, num_labels, cpu, empty=True), META)
        except Exception:  # noqa: BLE001 - e.g. an initialisation that reads values; built whole
            pass
    return (*build_fn(cfg, kind, num_labels, cpu), cpu)


def non_persistent_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The buffers a state dict leaves out, by name."""
    return {f"{name}.{b}" if name else b: getattr(m, b) for name, m in model.named_modules()
            for b in getattr(m, "_non_persistent_buffers_set", ())}


def shard(model: torch.nn.Module, device: torch.device, world_size: int, first: bool, main: bool) -> None:
    """Shard ``model`` in place over the processes; with ``first`` loading, fill every process's
    shards from the first process's weights (the others' model is on the meta device)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    blocks = {name for m in model.modules() for name in (getattr(m, "_no_split_modules", None) or [])}
    units = [m for m in model.modules() if type(m).__name__ in blocks]
    if not units:
        raise RuntimeError(f"trainer.strategy=fsdp: no transformer block found to shard in "
                           f"{type(model).__name__} (the model names none in _no_split_modules)")
    full, kept = {}, [None]
    if first:
        if main:  # the whole weights, in CPU memory, until they are sent
            full, kept[0] = model.state_dict(), {k: v.cpu() for k, v in non_persistent_buffers(model).items()}
        model.to(META)
        if hasattr(model, "tie_weights"):  # moving to meta unties shared weights (embeddings and output)
            model.tie_weights()
    for unit in units:
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    if not first:
        return
    load_from_first(model, full, device, main)
    del full
    dist.broadcast_object_list(kept, src=0)
    for fqn, value in kept[0].items():
        parent, _, leaf = fqn.rpartition(".")
        model.get_submodule(parent).register_buffer(leaf, value.to(device), persistent=False)


def load_from_first(model: torch.nn.Module, full: dict, device: torch.device, main: bool) -> None:
    """Every tensor of the sharded ``model`` (on the meta device) from ``full``, the first
    process's whole state: each process's shards are scattered from it, other tensors broadcast."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor, distribute_tensor

    loaded: dict[str, torch.Tensor] = {}
    first_name: dict[int, str] = {}  # a tensor that several modules share (tied embeddings) is loaded once
    for name, mine in model.state_dict(keep_vars=True).items():
        if id(mine) in first_name:
            loaded[name] = loaded[first_name[id(mine)]]
            continue
        first_name[id(mine)] = name
        value = (full[name].detach().to(device) if main
                 else torch.empty(mine.shape, dtype=mine.dtype, device=device))
        if isinstance(mine, DTensor):  # scattered from the first process (src_data_rank=0)
            value = distribute_tensor(value, mine.device_mesh, mine.placements)
        else:
            dist.broadcast(value, src=0)
        # one Parameter object per shared tensor: assigning it keeps the modules tied
        loaded[name] = torch.nn.Parameter(value, mine.requires_grad) if isinstance(mine, torch.nn.Parameter) else value
    model.load_state_dict(loaded, assign=True)


def gather_full(model: torch.nn.Module, main: bool) -> dict | None:
    """A sharded model's full state (every process takes part), on the first process only, in
    CPU memory; None on the others."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return state if main else None


def unshard(s, cfg, state: dict, build_fn, device: torch.device) -> None:
    """A run's trained ``state`` (gathered on the first process) in the model built again on
    ``device`` by ``build_fn`` as the run's setup built it, so that what follows sees an ordinary
    model (``s.device`` becomes ``device``)."""
    from harness.methods import TrainingStart
    from harness.training.loop import total_steps

    s.loaded = s.adapted = None  # the sharded model
    s.device = device
    s.loaded, s.adapted = build_fn(cfg, s.kind, s.data.num_labels, device)
    s.adapted.before_training(TrainingStart(total_steps(len(s.batches["train"]), cfg.trainer),
                                            s.batches["train"], device))
    s.adapted.model.load_state_dict(state)
