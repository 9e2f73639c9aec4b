"""The training loop: read it top to bottom. One function sets up, one step function does the work."""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from featurestore.label_names import names_any_class
from featurestore.reader import StoreReader
from schemas.config import to_dict
from schemas.version import code_version
from trainers.checkpoint import CHECKPOINT_NAME, load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from trainers.config import TrainConfig
from trainers.data.batching import to_detector_inputs
from trainers.data.streaming import StoreDetectionDataset
from trainers.data.worker_transfer import collate_for_transfer, received_batch
from trainers.distributed import all_reduce_mean, data_parallel, init_distributed, pick_device
from trainers.methods import training_method
from trainers.optim import WarmupMultiStep, build_optimizer, scaled_schedule
from trainers.scalars import ScalarLog
from trainers.vocabulary import ClassVocabulary, load_class_vocabulary
from trainers.weight_average import WeightAverage


@dataclass
class Position:
    """Where the run is: a checkpoint restores it, so a resumed run reads the very next batch."""

    epoch: int = 0
    batches_done: int = 0  # micro-batches of this epoch
    step: int = 0  # optimizer steps since the start


@dataclass
class TrainState:
    detector: torch.nn.Module
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: WarmupMultiStep
    position: Position
    excluded_label: Callable[[str], bool] | None = None  # pseudo labels left out of training
    average: WeightAverage | None = None  # optim.ema_decay > 0


class NonFiniteLossError(FloatingPointError):
    pass


def train(config: TrainConfig, resume: str | Path | None = None) -> Path:
    """Train until the schedule (or `max_steps`) ends; returns the path of the final checkpoint."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)  # cuda:LOCAL_RANK under torchrun, made the current device
    group = init_distributed(device)
    torch.manual_seed(config.seed + group.rank)
    out_dir = Path(config.out_dir)
    vocabulary = load_class_vocabulary(config.store)
    base = vocabulary.subset(novel=False)
    state = build_state(config, vocabulary, device)
    if resume:
        restore(state, load_checkpoint(resume))
    model = data_parallel(state.detector, device, group)
    dataset = StoreDetectionDataset(config.store, config.image_root, base.index_of, config.stream, config.batch_size)
    epochs, _ = scaled_schedule(config.optim)
    steps_per_epoch = math.ceil(_store_images(config.store) / (config.batch_size * group.world_size
                                                                 * config.optim.accumulate))
    total_steps = config.max_steps or epochs * steps_per_epoch
    log = ScalarLog(out_dir, enabled=group.is_main)
    base_text = base.embeddings.to(device)
    if group.is_main:
        print(f"training {config.method} on {config.store}: {epochs} epochs x ~{steps_per_epoch} steps, "
              f"{sum(p.numel() for p in state.detector.parameters()) / 1e6:.2f} M parameters, device {device}, "
              f"world size {group.world_size}")
    started, last, waited, timed_steps = time.time(), time.time(), 0.0, 0
    position = state.position
    while position.epoch < epochs and position.step < total_steps:
        dataset.set_position(position.epoch, position.batches_done)
        state.scheduler.set_epoch(position.epoch)
        # A generator of its own: creating the loader must not consume the global RNG that a resume restores.
        loader = DataLoader(dataset, batch_size=config.batch_size, num_workers=config.num_workers,
                            collate_fn=collate_for_transfer,
                            generator=torch.Generator().manual_seed(config.seed * 1000 + position.epoch))
        fetch_started = time.time()
        for batch in loader:
            batch = received_batch(batch)
            waited += time.time() - fetch_started
            terms = train_step(model, state, batch, base_text, config, device)
            position.batches_done += 1
            if position.batches_done % config.optim.accumulate:
                fetch_started = time.time()
                continue
            position.step += 1
            timed_steps += 1
            if group.is_main and (position.step % config.log_every == 0 or position.step == total_steps):
                elapsed = time.time() - last
                report(log, position, terms, state, timed_steps / elapsed, waited / elapsed, total_steps,
                       time.time() - started)
                last, waited, timed_steps = time.time(), 0.0, 0
            if group.is_main and position.step % config.checkpoint_every == 0:
                save(state, config, out_dir / CHECKPOINT_NAME)
            if position.step >= total_steps:
                break
            fetch_started = time.time()
        else:
            position.epoch, position.batches_done = position.epoch + 1, 0
    final = out_dir / CHECKPOINT_NAME
    if group.is_main:
        save(state, config, final)
        print(f"done: {position.step} steps in {(time.time() - started) / 60:.1f} min; checkpoint {final}")
    log.close()
    return final


def train_step(model, state: TrainState, batch: dict, base_text: torch.Tensor, config: TrainConfig,
               device: torch.device) -> dict[str, float]:
    """One micro-batch: forward, loss, backward; an optimizer step every `accumulate` micro-batches.

    Returns the loss terms as floats (a CPU-GPU sync point, once per micro-batch)."""
    inputs = to_detector_inputs(batch, use_pseudo_boxes=True, device=device, excluded_label=state.excluded_label)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
        losses = training_method(config.method).losses(model, state.criterion, inputs, base_text)
    loss = sum(losses.values())
    terms = {name: float(value.detach()) for name, value in losses.items()}
    if not math.isfinite(float(loss.detach())):
        raise NonFiniteLossError(f"non-finite loss at step {state.position.step + 1} "
                                 f"(epoch {state.position.epoch}): " + ", ".join(f"{k}={v:.4g}" for k, v in terms.items()))
    (loss / config.optim.accumulate).backward()
    if (state.position.batches_done + 1) % config.optim.accumulate == 0:
        if config.optim.clip_grad_norm > 0:
            # Clipping guards the early steps, when the distillation terms can spike (mmdet: max_norm 35 / 10).
            terms["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(state.detector.parameters(),
                                                                      config.optim.clip_grad_norm))
        state.optimizer.step()
        state.optimizer.zero_grad(set_to_none=True)
        state.scheduler.step()
        if state.average is not None:
            state.average.update(state.detector)
    terms["loss"] = float(all_reduce_mean(loss.detach()))
    return terms


def build_state(config: TrainConfig, vocabulary: ClassVocabulary, device: torch.device) -> TrainState:
    detector, criterion = training_method(config.method).build(config, vocabulary)
    detector, criterion = detector.to(device), criterion.to(device)
    optimizer = build_optimizer(detector.parameters(), config.optim)
    excluded = None
    if config.drop_pseudo_labels_naming_base:
        base_names = vocabulary.subset(novel=False).names
        excluded = functools.partial(names_any_class, class_names=base_names)
    average = WeightAverage(detector, config.optim.ema_decay) if config.optim.ema_decay > 0 else None
    return TrainState(detector, criterion, optimizer, WarmupMultiStep(optimizer, config.optim), Position(), excluded,
                      average)


def save(state: TrainState, config: TrainConfig, path: Path) -> Path:
    average = {} if state.average is None else {"detector_average": state.average.state_dict()}
    return save_checkpoint(path, detector=state.detector.state_dict(), criterion=state.criterion.state_dict(),
                           optimizer=state.optimizer.state_dict(), scheduler=state.scheduler.state_dict(),
                           position=dataclasses.asdict(state.position), rng=rng_state(),
                           config=to_dict(config), code_version=code_version(), **average)


def restore(state: TrainState, checkpoint: dict) -> None:
    state.detector.load_state_dict(checkpoint["detector"])
    state.criterion.load_state_dict(checkpoint["criterion"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.scheduler.load_state_dict(checkpoint["scheduler"])
    state.position = Position(**checkpoint["position"])
    restore_rng_state(checkpoint["rng"])
    if state.average is not None:
        if "detector_average" in checkpoint:
            state.average.load_state_dict(checkpoint["detector_average"])
        else:  # the run turns the average on here: it starts from the restored weights
            state.average = WeightAverage(state.detector, state.average.decay)
            print(f"resumed at step {state.position.step} from a checkpoint without a weight average; "
                  f"the average (optim.ema_decay={state.average.decay}) starts here")


def report(log: ScalarLog, position: Position, terms: dict[str, float], state: TrainState, steps_per_second: float,
           data_share: float, total_steps: int, elapsed: float) -> None:
    """The console line (it/s, ETA, data wait, each loss) and the same scalars to the log."""
    eta = (total_steps - position.step) / max(steps_per_second, 1e-9)
    lr = state.optimizer.param_groups[0]["lr"]
    print(f"epoch {position.epoch} step {position.step}/{total_steps} | {steps_per_second:.2f} it/s | "
          f"ETA {eta / 60:.1f} min | data {100 * data_share:.0f}% | lr {lr:.2e} | "
          + " ".join(f"{name} {value:.4f}" for name, value in terms.items()), flush=True)
    log.add(position.step, {**terms, "lr": lr, "it_per_s": steps_per_second, "data_share": data_share,
                            "elapsed_s": elapsed})


def _store_images(store: str) -> int:
    return sum(c.files["images"].rows or 0 for c in StoreReader(store).table_commits("images"))
