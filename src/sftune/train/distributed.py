"""Several processes: which engine shards the model (``--distributed``), and threads per process.

sftune shards nothing itself. ``--distributed`` only fills in the ``TrainingArguments`` that turn
on an engine the Trainer already drives through ``accelerate``:

* ``ddp``: plain data parallelism, what ``torchrun``/``accelerate launch`` give by default;
* ``fsdp``: accelerate's FSDP plugin, FSDP2 (``torch.distributed.fsdp.fully_shard``), full
  shard, one unit per decoder layer, sharded checkpoints; the final model is gathered into one
  plain transformers folder (or adapter) written by rank 0;
* ``deepspeed-zero2`` / ``deepspeed-zero3``: accelerate's DeepSpeed plugin with ZeRO stage 2 or 3
  (``pip install deepspeed``); ZeRO-3 gathers the 16-bit weights when saving.

``training_args`` (and an accelerate config file) still win for full control.

One gap in accelerate is bridged here: on a machine without a GPU, accelerate 1.16 always sets up
``MULTI_CPU`` (DDP) and silently drops the FSDP plugin, although FSDP2 itself runs on CPU over
gloo. :func:`use_fsdp_on_cpu` hands the plugin back to accelerate's state, so accelerate's own
FSDP2 code (``fsdp2_prepare_model``, sharded checkpoints, full-state-dict gathering) runs.
"""

from __future__ import annotations

import logging
import os

from ..options.training import Distributed

log = logging.getLogger("sftune")


def distributed_training_args(kind: str) -> dict:
    """``TrainingArguments`` keys that select the engine for ``kind`` (``auto``: whatever the launcher set up).

    >>> distributed_training_args("fsdp")["fsdp_config"]["version"]
    2
    >>> distributed_training_args("deepspeed-zero3")["deepspeed"]["zero_optimization"]["stage"]
    3
    >>> distributed_training_args("auto"), distributed_training_args("ddp")
    ({}, {'ddp_find_unused_parameters': False})
    """
    if kind == "auto":
        return {}
    if kind == "ddp":
        # Every parameter gets a gradient in SFT; searching for unused ones costs a graph walk per step.
        return {"ddp_find_unused_parameters": False}
    if kind == "fsdp":
        return {
            "fsdp": True,
            "fsdp_config": {
                "version": 2,
                "reshard_after_forward": True,  # full shard (ZeRO-3-like); False would be SHARD_GRAD_OP
                "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # one unit per decoder layer (_no_split_modules)
                "state_dict_type": "SHARDED_STATE_DICT",  # checkpoints: each rank writes its shard
            },
        }
    if kind.startswith("deepspeed-zero"):
        stage = int(kind[-1])
        zero = {"stage": stage}
        if stage == 3:
            zero["stage3_gather_16bit_weights_on_model_save"] = True  # save_model writes full weights
        return {
            "deepspeed": {
                "zero_optimization": zero,
                # "auto": the Trainer fills these from its own arguments, so they cannot disagree.
                "train_micro_batch_size_per_gpu": "auto",
                "gradient_accumulation_steps": "auto",
                "train_batch_size": "auto",
                "gradient_clipping": "auto",
                "bf16": {"enabled": "auto"},
                "fp16": {"enabled": "auto"},
            }
        }
    raise ValueError(f"distributed={kind!r}: choose one of {', '.join(Distributed.__args__)}")


def use_fsdp_on_cpu(accelerator, plugin_args: dict | None) -> bool:
    """Give accelerate's FSDP plugin back to a CPU run that accelerate set up as DDP; True when done.

    accelerate only selects FSDP for GPU-like devices; on CPU it builds ``MULTI_CPU`` and drops the
    plugin, so ``fsdp`` would silently train with DDP. FSDP2 works on CPU with gloo (all-gather and
    reduce-scatter), so the state is switched to FSDP before the model is prepared; everything
    after that is accelerate's own FSDP2 path.
    """
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    from_launcher = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"  # accelerate launch --use_fsdp / a config file
    if not (plugin_args or from_launcher) or accelerator.distributed_type != DistributedType.MULTI_CPU:
        return False
    # With no TrainingArguments for FSDP, the plugin reads the launcher's FSDP_* variables, as accelerate does on GPUs.
    plugin = FullyShardedDataParallelPlugin(**(plugin_args or {}))
    state = AcceleratorState()
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    log.info("fsdp: accelerate set this CPU run up as DDP; switched it to its FSDP%d plugin (gloo)", plugin.fsdp_version)
    return True


def threads_per_process(cores: int, local_processes: int, env: dict) -> int | None:
    """Threads each process should use, or None to leave torch's setting alone.

    Several processes on one machine each default to all cores, so N processes run N × cores
    threads and slow each other down. Unless the user chose (``OMP_NUM_THREADS`` set by them, not
    torchrun's default of 1, which it sets with a warning and no regard to the core count), each
    process gets ``cores // local_processes`` threads. torchrun's default is recognised by its
    value "1" together with torchrun's ``TORCHELASTIC_RUN_ID``: a user who wants exactly one thread
    under torchrun says ``SFTUNE_THREADS=1``, which always wins.

    >>> threads_per_process(16, 4, {})
    4
    >>> threads_per_process(16, 4, {"OMP_NUM_THREADS": "1", "TORCHELASTIC_RUN_ID": "x"})  # torchrun's default
    4
    >>> threads_per_process(16, 4, {"OMP_NUM_THREADS": "2"})  # the user's choice
    >>> threads_per_process(16, 4, {"SFTUNE_THREADS": "3"})
    3
    >>> threads_per_process(2, 4, {}), threads_per_process(16, 1, {})
    (1, None)
    """
    if env.get("SFTUNE_THREADS"):
        return max(1, int(env["SFTUNE_THREADS"]))
    if local_processes <= 1:
        return None
    omp = env.get("OMP_NUM_THREADS")
    if omp and not (omp == "1" and env.get("TORCHELASTIC_RUN_ID")):
        return None
    return max(1, cores // local_processes)


def set_threads(env=None) -> int | None:
    """Apply :func:`threads_per_process` to torch in this process and say so; returns the count set.

    Called at the start of ``sftune.train.train``. A library user who already called
    ``torch.set_num_threads`` should also set ``OMP_NUM_THREADS`` (or ``SFTUNE_THREADS``), which is
    what this looks at.
    """
    import torch

    env = os.environ if env is None else env
    local = int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1)))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = threads_per_process(cores, local, env)
    if n is not None:
        torch.set_num_threads(n)
        os.environ["OMP_NUM_THREADS"] = str(n)  # for libraries started later (tokenizers, data workers)
        log.info("threads: %d per process (%d cores, %d processes on this machine, rank %s)",
                 n, cores, local, env.get("RANK", "0"))
    return n


def save_model(trainer, out, dtype=None) -> None:
    """Write the trained model (full weights, or the adapter) to ``out`` as one plain folder. Call on EVERY rank.

    Under FSDP and ZeRO-3 the weights live in shards, so gathering them is collective: every
    process takes part and rank 0 writes (the Trainer's ``save_model``; under DDP it simply writes
    on rank 0). Checkpoints stay sharded (each rank writes its part; resumable); only this final
    copy is gathered, with accelerate's "train sharded, save full" switch. ``dtype`` is the dtype
    the full weights are written in (None: as trained).
    """
    plugin = trainer.accelerator.state.fsdp_plugin if trainer.is_fsdp_enabled else None
    trainer.save_dtype = dtype
    if plugin is None:
        if dtype is not None and not trainer.is_deepspeed_enabled and dtype != next(trainer.model.parameters()).dtype:
            trainer.model.to(dtype)  # training is over; only the saved copy's dtype changes meaning
        trainer.save_model(str(out))
        return
    before = plugin.state_dict_type
    plugin.set_state_dict_type("FULL_STATE_DICT")
    try:
        trainer.save_model(str(out))
    finally:
        plugin.set_state_dict_type(before)
