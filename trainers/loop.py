"""The training loop: read it top to bottom. `train` sets up and runs the schedule; `train_step` is one optimizer
step over its micro-batches. The method (trainers.training_method) says what a batch is and what it costs."""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from schemas.config import to_dict
from schemas.version import code_version
from trainers.checkpoint import CHECKPOINT_NAME, load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from trainers.config import TrainConfig
from trainers.distributed import all_reduce_mean, data_parallel, init_distributed, pick_device
from trainers.optim import WarmupMultiStep, build_optimizer, scaled_schedule
from trainers.scalars import ScalarLog
from trainers.training_method import TrainingData, TrainingMethod
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
    average: WeightAverage | None = None  # optim.ema_decay > 0


class NonFiniteLossError(FloatingPointError):
    pass


@dataclass
class StepMeter:
    """Throughput since the last log line, and whether any loss since then was non-finite (a device tensor, read
    only on log and checkpoint steps: reading it is a CPU-GPU sync point)."""

    started: float = dataclasses.field(default_factory=time.time)
    waited: float = 0.0  # seconds spent waiting for the loader
    steps: int = 0
    first_step: int = 1
    non_finite: torch.Tensor | None = None

    def restart(self, next_step: int) -> None:
        self.started, self.waited, self.steps, self.first_step, self.non_finite = time.time(), 0.0, 0, next_step, None


def train(config: TrainConfig, method: TrainingMethod, resume: str | Path | None = None) -> Path:
    """Train until the schedule (or `max_steps`) ends; returns the path of the final checkpoint."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)  # cuda:LOCAL_RANK under torchrun, made the current device
    group = init_distributed(device)
    torch.manual_seed(config.seed + group.rank)
    out_dir = Path(config.out_dir)
    context = method.prepare(config, device)
    data = method.training_data(config, context)
    state = build_state(config, method, context, device)
    if resume:
        restore(state, load_checkpoint(resume))
    model = data_parallel(state.detector, device, group)
    epochs, _ = scaled_schedule(config.optim)
    micro_steps = config.optim.accumulate
    images_per_step = config.batch_size * group.world_size * micro_steps
    steps_per_epoch = math.ceil(data.images_per_epoch / images_per_step)
    total_steps = config.max_steps or epochs * steps_per_epoch
    log = ScalarLog(out_dir, enabled=group.is_main)
    if group.is_main:
        print(f"training {method.name}: {epochs} epochs x ~{steps_per_epoch} steps of {images_per_step} images, "
              f"{sum(p.numel() for p in state.detector.parameters()) / 1e6:.2f} M parameters, device {device}, "
              f"world size {group.world_size}")
    started, meter, position = time.time(), StepMeter(first_step=state.position.step + 1), state.position
    while position.epoch < epochs and position.step < total_steps:
        data.dataset.set_position(position.epoch, position.batches_done)
        state.scheduler.set_epoch(position.epoch)
        # A generator of its own: creating the loader must not consume the global RNG that a resume restores.
        loader = DataLoader(data.dataset, batch_size=config.batch_size, num_workers=config.num_workers,
                            collate_fn=data.collate,
                            generator=torch.Generator().manual_seed(config.seed * 1000 + position.epoch))
        batches = iter(loader)
        while position.step < total_steps:
            fetch_started = time.time()
            micro_batches = list(itertools.islice(batches, micro_steps))
            meter.waited += time.time() - fetch_started
            if not micro_batches:  # the epoch is over (its last step may have had fewer micro-batches)
                position.epoch, position.batches_done = position.epoch + 1, 0
                break
            terms = train_step(model, state, micro_batches, data, method, context, config, device, meter)
            position.batches_done += len(micro_batches)
            position.step += 1
            meter.steps += 1
            if position.step % config.log_every == 0 or position.step == total_steps:
                report(log, position, terms, state, meter, total_steps, time.time() - started, images_per_step,
                       group.is_main)
            if position.step % config.checkpoint_every == 0:
                check_finite(meter, position, terms)
                if group.is_main:
                    save(state, config, out_dir / CHECKPOINT_NAME)
    final = out_dir / CHECKPOINT_NAME
    if group.is_main:
        save(state, config, final)
        print(f"done: {position.step} steps in {(time.time() - started) / 60:.1f} min; checkpoint {final}")
    log.close()
    return final


def train_step(model, state: TrainState, micro_batches: list, data: TrainingData, method: TrainingMethod,
               context, config: TrainConfig, device: torch.device, meter: StepMeter) -> dict[str, torch.Tensor]:
    """Forward and backward over the micro-batches of one optimizer step, then the step.

    Returns the step's loss terms averaged over its micro-batches, as detached tensors on the device: turning them
    into floats is a CPU-GPU sync point, left to the log steps."""
    sums: dict[str, torch.Tensor] = {}
    for index, collated in enumerate(micro_batches):
        batch = data.to_batch(collated, device)
        # DDP all-reduces gradients in every backward; only the last micro-batch's needs to (nanoGPT's
        # require_backward_grad_sync).
        last = index == len(micro_batches) - 1
        sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not last else contextlib.nullcontext()
        with sync:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                losses = method.losses(model, state.criterion, batch, context)
            loss = sum(losses.values())
            (loss / len(micro_batches)).backward()
        for name, value in {**losses, "loss": loss}.items():
            sums[name] = sums.get(name, 0) + value.detach().float() / len(micro_batches)
    bad = ~torch.isfinite(sums["loss"])
    meter.non_finite = bad if meter.non_finite is None else meter.non_finite | bad
    if config.optim.clip_grad_norm > 0:
        # Clipping guards the early steps, when the distillation terms can spike (mmdet: max_norm 35 / 10).
        sums["grad_norm"] = torch.nn.utils.clip_grad_norm_(state.detector.parameters(), config.optim.clip_grad_norm)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.scheduler.step()
    if state.average is not None:
        state.average.update(state.detector)
    return sums


def check_finite(meter: StepMeter, position: Position, terms: dict[str, torch.Tensor]) -> None:
    """Stop when a loss since the last check was non-finite (read here only: a sync point)."""
    if meter.non_finite is not None and bool(meter.non_finite):
        values = ", ".join(f"{name}={float(value):.4g}" for name, value in terms.items())
        where = (f"step {position.step}" if meter.first_step == position.step
                 else f"steps {meter.first_step}-{position.step}")
        raise NonFiniteLossError(f"non-finite loss at {where} (epoch {position.epoch}); the last step's terms: "
                                 f"{values}")


def build_state(config: TrainConfig, method: TrainingMethod, context, device: torch.device) -> TrainState:
    detector, criterion = method.build(config, context)
    detector, criterion = detector.to(device), criterion.to(device)
    optimizer = build_optimizer(detector.parameters(), config.optim)
    average = WeightAverage(detector, config.optim.ema_decay) if config.optim.ema_decay > 0 else None
    return TrainState(detector, criterion, optimizer, WarmupMultiStep(optimizer, config.optim), Position(), average)


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


def report(log: ScalarLog, position: Position, terms: dict[str, torch.Tensor], state: TrainState, meter: StepMeter,
           total_steps: int, elapsed: float, images_per_step: int, is_main: bool) -> None:
    """A log step: the loss terms become floats, averaged over the processes (every process calls this), then the
    console line (it/s, samples/s, ETA, data wait, each loss) and the same scalars to the log."""
    check_finite(meter, position, terms)
    values = {name: float(all_reduce_mean(value)) for name, value in terms.items()}
    seconds = max(time.time() - meter.started, 1e-9)
    steps_per_second = meter.steps / seconds
    data_share = meter.waited / seconds
    meter.restart(position.step + 1)
    if not is_main:
        return
    eta = (total_steps - position.step) / max(steps_per_second, 1e-9)
    lr = state.optimizer.param_groups[0]["lr"]
    print(f"epoch {position.epoch} step {position.step}/{total_steps} | {steps_per_second:.2f} it/s "
          f"{steps_per_second * images_per_step:.1f} samples/s | ETA {eta / 60:.1f} min | data {100 * data_share:.0f}% "
          f"| lr {lr:.2e} | " + " ".join(f"{name} {value:.4f}" for name, value in values.items()), flush=True)
    log.add(position.step, {**values, "lr": lr, "it_per_s": steps_per_second,
                            "samples_per_s": steps_per_second * images_per_step, "data_share": data_share,
                            "elapsed_s": elapsed})
