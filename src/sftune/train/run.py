"""``sftune train``: config -> data -> model -> ``transformers.Trainer`` -> a self-describing output folder.

The Trainer does the loop, mixed precision, checkpoints and distribution (DDP/DeepSpeed/FSDP
through ``accelerate``); this module only wires it up and writes what a person needs at the
end: the model, the tokenizer with the chat template used, the config, metrics, a loss curve
and the answers to a few questions before and after training.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..config import ConfigError, DataSource, SFTConfig
from .outputs import ask, eval_questions, save_outputs, saved_dtype, summary

log = logging.getLogger("sftune")

RESOURCES = Path(__file__).resolve().parent.parent / "resources"


@dataclass
class RunResult:
    output_dir: Path
    metrics: dict = field(default_factory=dict)
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    model: object = None
    """The trained model as it is in memory (a PeftModel for adapter methods)."""


def _world() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def default_output_dir(cfg: SFTConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    if _world()[1] > 1:
        raise ValueError("with several processes every rank must write to the same folder: pass --output-dir DIR")
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def bundled_config_defaults(cfg: SFTConfig) -> SFTConfig:
    """With no data given, the out-of-the-box demo: teach the bundled identity, with general data mixed in.

    The general rows (40% of the mixture) keep the model answering ordinary questions while it
    learns its new name. Epochs and learning rate are set for a run of a few minutes on a CPU
    unless given explicitly.
    """
    if cfg.data:
        return cfg
    explicit = cfg.model_fields_set
    cfg = cfg.model_copy()
    cfg.data = [
        DataSource(path=str(RESOURCES / "identity.jsonl")),
        DataSource(path=str(RESOURCES / "general.jsonl"), share=DEMO_GENERAL_SHARE),
    ]
    for key, value in DEMO_TRAINING.items():
        if key not in explicit:
            setattr(cfg, key, value)
    return cfg


#: The demo's schedule: ~60 optimizer steps of 8 chats. Measured to teach the identity (see the README).
DEMO_GENERAL_SHARE = 0.4
DEMO_TRAINING = {"num_train_epochs": 2.0, "learning_rate": 5e-4}


@dataclass
class TrainingData:
    """What the data stage hands to training: rows ready for the collator, and how they were made."""

    train: object  # datasets.Dataset (IterableDataset with cfg.streaming): samples, or packed rows (with seq_lengths) when cfg.packing
    eval: object | None
    info: dict
    """Per source: the data report; the mixture; the packing statistics (for run_info.json)."""
    template: str
    """The chat template every row was rendered with: the one to install in the tokenizer."""


def load_datasets(cfg: SFTConfig, tokenizer) -> TrainingData:
    """The data stage of a run: prepare every source (cached), mix them, split off held-out rows, pack.

    The chat template is resolved here, once (``cfg.template`` against the tokenizer), and every
    source and the held-out data are prepared with it; training installs ``.template``.
    """
    from ..data.mixing import mix
    from ..data.packing import format_pack_stats, pack, pack_stats
    from ..data.prepare import prepare
    from ..data.templates import resolve_template

    template = resolve_template(cfg.template, tokenizer)
    if cfg.streaming:  # read, encode, mix and pack lazily while training (sftune.data.streaming)
        from ..data.streaming import streaming_data

        train, info = streaming_data(cfg, tokenizer, template)
        evald = prepare(cfg, tokenizer, list(cfg.eval_data), template=template).dataset if cfg.eval_data else None
        return TrainingData(train, _model_columns(evald) if evald is not None else None, info, template)
    preps = [prepare(cfg, tokenizer, [src], template=template) for src in cfg.data]
    info = {"sources": [], "prepare_seconds": round(sum(p.seconds for p in preps), 2)}
    for src, p in zip(cfg.data, preps):
        log.info("data %s: %s%s", src.path, p.report.summary().splitlines()[0], " (cached)" if p.cached else "")
        for note in p.report.notes:
            log.warning("  %s", note)
        info["sources"].append({"path": src.path, **p.report.to_dict(), "cached": p.cached})
    if len(preps) == 1:
        train = preps[0].dataset  # the Trainer's sampler shuffles, seeded
        info["mixture"] = None
    else:
        try:
            train, info["mixture"] = mix([p.dataset for p in preps], [s.weight for s in cfg.data], [s.share for s in cfg.data], seed=cfg.seed)
        except ValueError as e:
            raise ConfigError(f"data mixture of {[s.path for s in cfg.data]}: {e}") from None
        for src, row in zip(cfg.data, info["mixture"]["sources"]):
            log.info("mixture: %s -> %d rows (%.1f%%, each row used %.2fx)", src.path, row["rows_out"], 100 * row["share"], row["times_each_row"])
    evald = None
    if cfg.eval_data:
        evald = prepare(cfg, tokenizer, list(cfg.eval_data), template=template).dataset
    elif cfg.eval_split > 0:
        split = train.train_test_split(test_size=cfg.eval_split, seed=cfg.seed)
        train, evald = split["train"], split["test"]
    train = _model_columns(train)
    if cfg.packing and len(train):
        train = pack(train, cfg.max_length, seed=cfg.seed)
        info["packing"] = pack_stats(train, cfg.max_length)
        log.info(format_pack_stats(info["packing"]))
    return TrainingData(train, _model_columns(evald) if evald is not None else None, info, template)


def _model_columns(ds):
    """Drop the ``source`` (file:line) column: it is for reports, and the collators take tensors only."""
    return ds.remove_columns([c for c in ("source",) if c in ds.column_names])


def micro_batching(cfg: SFTConfig, cuda: bool) -> tuple[int, int]:
    """``(per-device micro-batch, accumulation steps)`` for the configured batch.

    With packing, a step's rows can be run one micro-batch at a time and their gradients summed:
    the Trainer normalises the loss by the trained tokens of the whole step, so the update is the
    same, and activation memory shrinks to one micro-batch. On this project's 2-core CPU, one
    512-token row per pass was 36% faster than two with the masked attention, and is as fast with
    per-sample attention, at 0.2-0.8 GB less peak memory (benchmarks/README.md), so CPU runs default
    to one row; GPUs keep the whole batch per pass, which they need to stay busy.

    >>> micro_batching(SFTConfig(packing=True, per_device_train_batch_size=4, gradient_accumulation_steps=2), cuda=False)
    (1, 8)
    >>> micro_batching(SFTConfig(packing=True, per_device_train_batch_size=4), cuda=True)
    (4, 1)
    >>> micro_batching(SFTConfig(per_device_train_batch_size=4), cuda=False)
    (4, 1)
    """
    batch, accum = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
    if not cfg.packing:
        return batch, accum
    micro = cfg.packed_micro_batch or (batch if cuda else 1)
    if batch % micro:
        raise ConfigError(
            f"packed_micro_batch={micro} does not divide per_device_train_batch_size={batch}: "
            f"pick a micro-batch of {', '.join(str(d) for d in range(1, batch + 1) if batch % d == 0)} rows"
        )
    return micro, accum * (batch // micro)


def training_arguments(cfg: SFTConfig, out: Path, precision_args: dict, has_eval: bool, cuda: bool = False):
    from transformers import TrainingArguments

    micro, accum = micro_batching(cfg, cuda)
    kw = dict(
        output_dir=str(out),
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=micro,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=accum,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=cfg.weight_decay,
        lr_scheduler_type=cfg.lr_scheduler_type,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy=("steps" if cfg.eval_steps else "no") if has_eval else "no",
        eval_steps=cfg.eval_steps,
        activation_checkpointing=cfg.gradient_checkpointing,
        seed=cfg.seed,
        report_to=[r for r in cfg.report_to if r != "none"],
        neftune_noise_alpha=cfg.neftune_alpha,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        disable_tqdm=True,  # sftune's own progress bar replaces the Trainer's
        **precision_args,
    )
    from .distributed import distributed_training_args

    kw.update(distributed_training_args(cfg.distributed))
    if cfg.streaming:
        # Each process reads the (seeded, identical) stream and keeps its share of every batch;
        # accelerate's default for iterable data, rank 0 sending batches, needs equal-length batches.
        kw["accelerator_config"] = {"dispatch_batches": False}
    kw.update(cfg.training_args)
    return TrainingArguments(**kw)


def train(cfg: SFTConfig, *, progress: bool = True, compare: bool = True) -> RunResult:
    """Fine-tune as configured and write the output folder. Returns where and what happened."""
    import torch
    from transformers.trainer_callback import PrinterCallback

    from ..data.templates import install_template
    from ..model.loading import load_model, load_tokenizer
    from ..model.methods import apply_method, describe_parameters, qlora_load_kwargs
    from ..model.precision import choose_precision, training_args_for
    from .callbacks import CheckpointMarker, MetricsLog, ProgressBar, latest_complete_checkpoint
    from .distributed import save_model, set_threads
    from .trainer import SFTTrainer

    t_start = time.perf_counter()
    set_threads()  # several processes on one machine: cores / processes threads each, unless set
    cfg = bundled_config_defaults(cfg)
    rank, world = _world()
    if cfg.distributed == "fsdp" and world == 1:
        # Found now rather than after the data and model are loaded (transformers refuses it there).
        raise ConfigError(f"--distributed {cfg.distributed} splits training across processes, and this is one process\n"
                          f"  fix: launch with torchrun --nproc-per-node N -m sftune train ... --distributed {cfg.distributed} "
                          "(or accelerate launch), or drop --distributed for one process")
    out = default_output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    # Seed before the model exists: adapter initialisation (LoRA's A matrices, prompt embeddings)
    # draws random numbers, and the Trainer only seeds later, so without this two runs with the
    # same seed start from different adapters.
    from transformers import set_seed

    set_seed(cfg.seed)
    precision, why = choose_precision(cfg.precision)
    log.info("precision: %s (%s)", precision, why)

    tokenizer = load_tokenizer(cfg.model, cache_dir=cfg.cache_dir, trust_remote_code=cfg.trust_remote_code)
    data = load_datasets(cfg, tokenizer)
    # The tokenizer is saved with the model, so it gets exactly the template the rows were rendered with.
    install_template(tokenizer, data.template)
    train_ds, eval_ds, data_info = data.train, data.eval, data.info
    if not cfg.streaming and len(train_ds) == 0:  # a stream has no length; an empty one raises when read
        raise ValueError("no training rows left after reading and filtering the data; see the report above")

    load_kw = qlora_load_kwargs(cfg) if cfg.method == "qlora" else {}
    model = load_model(
        cfg.model, dtype=torch.float32, cache_dir=cfg.cache_dir, trust_remote_code=cfg.trust_remote_code,
        custom_architecture=cfg.custom_architecture, attn_implementation=cfg.attn_implementation, **load_kw,
    )
    questions = eval_questions(cfg) if compare and rank == 0 else []
    before = ask(model, tokenizer, questions, cfg=cfg) if questions and cfg.method in ("full", "selective") else []
    model = apply_method(model, cfg)
    log.info(describe_parameters(model))
    if questions and not before:
        with model.disable_adapter():  # the base model, without loading it twice
            before = ask(model, tokenizer, questions, cfg=cfg)

    args = training_arguments(cfg, out, training_args_for(precision), eval_ds is not None, cuda=torch.cuda.is_available())
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        callbacks=[ProgressBar(progress), MetricsLog(out), CheckpointMarker()],
        group_by_length=cfg.group_by_length,
    )
    trainer.remove_callback(PrinterCallback)
    resume = None
    if cfg.resume:
        resume = latest_complete_checkpoint(out) if cfg.resume == "latest" else Path(cfg.resume)
        if resume is None:
            log.warning("--resume latest: no complete checkpoint in %s; starting from scratch", out)
        else:
            log.info("resuming from %s", resume)
    # --- speed (sftune.train.speed): padding-free batches, per-sample attention, compiled layers; undone on exit
    from .speed import training_speedups

    with training_speedups(trainer.model, cfg, precision=precision, trainer=trainer) as speed:
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    log.info("speed: %s", speed.summary())
    metrics = dict(result.metrics)
    metrics["speed"] = speed.to_dict()
    # --- end speed
    if eval_ds is not None:
        metrics.update(trainer.evaluate())

    if questions and (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        # Generating on rank 0 alone would wait forever for the other ranks' shards.
        log.info("before/after answers: skipped, the weights are sharded across processes (ask with: sftune chat --model %s)", out)
        questions, before = [], []
    after = ask(trainer.model, tokenizer, questions, cfg=cfg) if questions else []
    # Every rank: FSDP/ZeRO-3 gather the full weights collectively; rank 0 writes.
    save_model(trainer, out, saved_dtype(cfg) if cfg.method in ("full", "selective") else None)
    if rank == 0:
        save_outputs(trainer, tokenizer, cfg, out, precision, why, metrics, data_info, questions, before, after)
        if cfg.export:
            from ..export import export_run

            res_export = export_run(out, cfg.export, cache_dir=cfg.cache_dir)
            print(f"exported {res_export.path} ({res_export.quant})")
            for line in [*res_export.notes, *res_export.commands]:
                print(f"  {line}")
        if cfg.merge and cfg.method not in ("full", "selective"):
            from ..infer.merge import merge_adapter

            merge_adapter(out, out / "merged", precision=saved_dtype(cfg))
    metrics["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    res = RunResult(out, metrics, before, after, questions, model=trainer.model)
    if rank == 0:
        print(summary(res, trainer))
    return res


