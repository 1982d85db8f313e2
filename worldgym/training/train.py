"""Train a world model from a recorded dataset: autoencoder, then dynamics + heads, then a self-forcing fine-tune.

Examples:
    worldgym train configs/cartpole.yaml --data runs/data/cartpole --out runs/cartpole
    worldgym train configs/cartpole.yaml --data runs/data/cartpole --out runs/cartpole --install MyCartPole
    worldgym train --data runs/data/mine --out runs/mine --install Mine   # the default recipe, sized to the data
    torchrun --nproc_per_node 2 -m worldgym.cli train configs/cartpole.yaml --data ... --out ...

The YAML file is a plain dump of `TrainConfig` (which nests the `WorldModelConfig`); without
one, `worldgym.training.recipes.data_recipe` sizes a recipe to the data (frame size, action
space, tokens; ``--recipe tiny`` for a few-step smoke run) and the run folder keeps it as
``config.yaml``. The stages run in order and each writes checkpoints into ``OUT``; rerunning the same
command resumes from the last checkpoint (weights, optimizer state, stage and step):

1. **autoencoder**: frames -> latents -> frames, MSE with extra weight on the pixels
   that are not background (the cart and the thin pole), then the latent statistics;
2. **dynamics** (teacher forcing): sequences of ``seq_frames`` latent frames laid out as
   [clean copy | noisy copy] (`Dynamics.forward_sequence`), the context copy lightly
   noised (t ~ U[0, context_noise]), sequences starting at random offsets inside
   episodes and longer than sink + window so window evictions are trained, noise levels
   drawn at the sampler's t = 1 with probability ``p_t_one``; reward (MSE) and
   termination (BCE) heads on the clean copy;
3. **self-forcing**: roll the model out on its own predictions through the real cached
   inference path (`Dynamics.forward_cached` against a `KVCache`, in the engine's order:
   denoise passes that only read the cache, then one commit pass), and regress every
   generated block to the true next latent (CartPole is deterministic), with the heads
   trained on the self-generated commit pass. The cache is detached between blocks
   unless ``sf_bptt``; rollouts may start from a prefix of real frames (``sf_context_max``);
4. **decoder** (optional, ``dec_steps``): the decoder alone fine-tuned on the blocks of
   detached rollouts against the true frames, so it draws clean frames from the latents a
   rollout actually produces (`DecoderLoss`);
5. **heads** (optional, ``heads_steps``; models with ``dynamics.fused_commit``): the
   ``denoise_heads`` alone fitted on detached self-forcing rollouts (everything else
   frozen), reading the last denoise pass as a fused engine does. ``--init`` from a model
   without them (the same config but ``fused_commit``) starts them from its commit heads.

Multi-process: under ``torchrun`` every process draws the same global batch from a
step-seeded generator and trains on its slice of it; gradients are averaged by
`DistributedDataParallel` (gloo on CPU, NCCL on CUDA), so N processes compute the same
update as one process with the same global batch. All randomness of step s is drawn
from a generator seeded by (seed, stage, s), so a resumed run repeats the losses of an
uninterrupted one. Logs go to stdout and ``OUT/log.jsonl``; the finished model is
``OUT/model`` (a checkpoint folder, start-frame bank filled with real start frames).
``--install NAME`` copies it into the user models directory (`worldgym.paths.user_models_dir`),
where ``import worldgym`` registers it as ``worldgym/<config name>-v0``.

Dimension letters: B batch, T frames, N tokens, C latent channels, H/W frame size.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from worldgym.model import checkpoint
from worldgym.config_io import ConfigError, dump_yaml, load_yaml, to_dict
from worldgym.training.averaging import WeightAverage
from worldgym.training.losses import AutoencoderLoss, DecoderLoss, DynamicsLoss, SelfForcingLoss
from worldgym.model.networks import Model, WorldModelConfig
from worldgym.paths import user_models_dir
from worldgym.training.data import STAGES, Data, TrainConfig, dynamics_batch, step_generator
from worldgym.training.probe import state_probe, termination_probe

log = logging.getLogger("worldgym.training.train")


def save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    """AdamW state as flat tensors in safetensors (never pickle); written atomically."""
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            tensors[f"{pid}.{key}"] = torch.as_tensor(val).detach().cpu().contiguous()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"param_groups": json.dumps(sd["param_groups"])})
    os.replace(tmp, path)


def load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
    flat = load_file(str(path))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, val in flat.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = val
    opt.load_state_dict({"state": state, "param_groups": groups})


# ---------------------------------------------------------------------- helpers
def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


@torch.no_grad()
def encode_all(model: Model, frames: torch.Tensor, bf16: bool, batch: int = 256) -> torch.Tensor:
    """Normalised latents (F, N, C) of every frame."""
    out = []
    with autocast(bf16):
        for i in range(0, len(frames), batch):
            out.append(model.autoencoder.encode(frames[i : i + batch]).float())
    return torch.cat(out)


@torch.no_grad()
def set_latent_stats(model: Model, frames: torch.Tensor, g: torch.Generator) -> None:
    idx = torch.randperm(len(frames), generator=g)[:4096]
    z = torch.cat([model.autoencoder.encode_raw(frames[idx[i : i + 256]]) for i in range(0, len(idx), 256)])  # (F, N, C)
    model.autoencoder.latent_mean.copy_(z.mean(dim=(0, 1)))
    model.autoencoder.latent_std.copy_(z.std(dim=(0, 1)).clamp(min=1e-4))


def autocast(bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def fill_start_bank(model: Model, data: Data) -> None:
    """The first ``context_frames`` frames of evenly spaced episodes become the start-frame bank."""
    K, Fc = model.start_frames.shape[:2]
    eps = torch.linspace(0, data.episodes - 1, K).round().long()
    for k, e in enumerate(eps.tolist()):
        s, T = int(data.starts[e]), int(data.lengths[e])
        idx = torch.arange(Fc).clamp(max=T) + s
        model.start_frames[k] = data.frames[idx]


class Run:
    """Process-group facts: rank, world size, and the slice of a global batch this process trains on."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.distributed = self.world > 1
        if self.distributed and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)

    def part(self, batch: int) -> slice:
        if batch % self.world:
            raise ConfigError(f"global batch {batch} must divide evenly over {self.world} processes; use batch sizes that are multiples of {self.world} in the config")
        n = batch // self.world
        return slice(self.rank * n, (self.rank + 1) * n)

    def wrap(self, module: nn.Module) -> nn.Module:
        if not self.distributed:
            return module
        return nn.parallel.DistributedDataParallel(module, broadcast_buffers=False)

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()


# ---------------------------------------------------------------------- the training loop
def train(
    cfg: TrainConfig,
    data_path: str | Path | list[str | Path],
    out: str | Path,
    stop_after: int | None = None,
    init: str | Path | None = None,
    init_stage: str = "dynamics",
) -> Path:
    """Run (or resume) all stages; returns the finished model folder ``OUT/model``.

    Args:
        data_path: one dataset folder or a list of them (trained on as one dataset).
        stop_after: stop (after checkpointing) once this many optimizer steps ran in this call (tests).
        init: start a new run from this model's weights (same model config) instead of from scratch ...
        init_stage: ... at the beginning of this stage (earlier stages are skipped). Ignored when
            ``OUT`` already holds a checkpoint (the run resumes from it).
    """
    if init_stage not in STAGES:
        raise ConfigError(f"init_stage must be one of {STAGES}, got {init_stage!r}")
    for key in ("sf_bptt_blocks", "sf_average_from"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{key} must be >= 0 (0 = off), got {getattr(cfg, key)}")
    if cfg.sf_average_from > cfg.sf_steps:
        raise ConfigError(f"sf_average_from must be at most sf_steps ({cfg.sf_steps}) so some checkpoint is averaged, got {cfg.sf_average_from}")
    if cfg.heads_target not in ("denoise", "commit"):  # refused before anything is written
        raise ConfigError(f"heads_target must be 'denoise' or 'commit', got {cfg.heads_target!r}")
    if cfg.term_labels not in ("real", "probe", "agree"):
        raise ConfigError(f"term_labels must be 'real' (the recorded end), 'probe' (the termination probe's reading) or 'agree', got {cfg.term_labels!r}")
    out = Path(out)
    run = Run()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if run.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        dump_yaml(cfg, out / "config.yaml")
    run.barrier()
    mc = cfg.model
    data = Data(data_path, mc.action, cfg.episode_weight_power)
    data_path = data.path
    want = (mc.autoencoder.frame_height, mc.autoencoder.frame_width, 3)
    if tuple(data.frames.shape[1:]) != want:
        raise ConfigError(
            f"dataset {data_path} has frames of shape {tuple(data.frames.shape[1:])}, the config's model needs {want}; "
            f"record at that size (worldgym record --size {want[0]}) or change the autoencoder frame size"
        )
    ckpt, opt_path = out / "checkpoint", out / "optimizer.safetensors"
    stage, start = STAGES[0], 0
    if (ckpt / "manifest.json").is_file():
        model = checkpoint.load(ckpt)
        if to_dict(model.config) != to_dict(mc):
            raise ConfigError(f"{ckpt} was trained with a different model config; use a new --out folder or the same config")
        stage, start = model.extra["stage"], int(model.extra["step"])
        if run.rank == 0:
            log.info("resuming %s at step %d from %s", stage, start, ckpt)
    elif init is not None:
        model = init_model(init, mc, init_stage)
        stage, start = init_stage, 0
        if run.rank == 0:
            log.info("starting %s from the weights of %s", stage, init)
    else:
        model = Model(mc)
    logf = open(out / "log.jsonl", "a") if run.rank == 0 else None
    ran = 0
    t_begin = time.time()
    latents = probe = term_probe = None
    for si in range(STAGES.index(stage) if stage != "done" else len(STAGES), len(STAGES)):
        name = STAGES[si]
        total = {"autoencoder": cfg.ae_steps, "dynamics": cfg.dyn_steps, "selfforce": cfg.sf_steps, "decoder": cfg.dec_steps,
                 "heads": cfg.heads_steps}[name]  # fmt: skip
        base_lr = {"autoencoder": cfg.ae_lr, "dynamics": cfg.dyn_lr, "selfforce": cfg.sf_lr, "decoder": cfg.dec_lr, "heads": cfg.heads_lr}[name]
        if name == "heads" and not total:
            continue  # nothing to fit (the stage is optional)
        if name == "heads" and cfg.heads_target == "denoise" and not mc.dynamics.fused_commit:
            raise ConfigError("heads_steps > 0 with heads_target: denoise fits denoise_heads, which only models with dynamics.fused_commit: true have; "
                              "set heads_target: commit, heads_steps: 0 or fused_commit: true")  # fmt: skip
        first = start if name == stage else 0
        if name == "autoencoder":
            params = list(model.autoencoder.parameters())
            module: nn.Module = AutoencoderLoss(model, cfg.ae_foreground_weight, cfg.ae_foreground_both)
        else:
            if latents is None:
                latents = encode_all(model, data.frames, cfg.bf16)  # (F, N, C): the AE is frozen from here on
            if name in ("selfforce", "heads") and cfg.term_labels == "probe" and term_probe is None:
                term_probe = termination_probe(latents, data, cfg, logf)
            if probe is None and (cfg.state_weight and name in ("dynamics", "selfforce") or cfg.term_labels == "agree" and name in ("selfforce", "heads")):
                probe = state_probe(latents, data, cfg, logf)
            if name == "decoder":
                params = list(model.autoencoder.decoder.parameters())
                module = DecoderLoss(model, cfg)
            elif name == "heads":
                params = list((model.dynamics.denoise_heads if cfg.heads_target == "denoise" else model.dynamics.heads).parameters())
                module = SelfForcingLoss(model, dataclasses.replace(cfg, sf_bptt=False, sf_loss="mse"), probe if cfg.term_labels == "agree" else None, term_probe)
            else:
                params = list(model.dynamics.parameters())
                module = DynamicsLoss(model, cfg, probe) if name == "dynamics" else SelfForcingLoss(model, cfg, probe, term_probe)
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        wrapped = run.wrap(module)
        opt = torch.optim.AdamW(params, lr=base_lr, weight_decay=0.0 if name in ("autoencoder", "decoder") else 0.01, betas=(0.9, 0.99))
        if first > 0 and opt_path.is_file():
            load_optimizer(opt, opt_path)
        average = WeightAverage(dict(model.dynamics.named_parameters()), out / "average.safetensors") if name == "selfforce" and cfg.sf_average_from else None
        t0, seen = time.time(), 0
        for step in range(first, total):
            # 1. draw the global batch from the step's own generator; keep this process's slice
            g = step_generator(cfg.seed, name, step)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, base_lr, cfg.warmup)
            if name == "autoencoder":
                idx = torch.randint(len(data.frames), (cfg.ae_batch,), generator=g)
                frames = data.frames[idx]  # (B, H, W, 3)
                norm = float(frames.numel()) / run.world
                with autocast(cfg.bf16):
                    loss = wrapped(frames[run.part(cfg.ae_batch)], norm)
                parts = {"recon": loss.detach() * run.world}
            elif name == "decoder":
                full = dynamics_batch(data, latents, g, cfg.dec_batch, cfg.dec_blocks + 1, cfg, selfforce=True)
                frames = data.frames[full["index"]]  # (B, T, H, W, 3)
                norm = float(full["valid"][:, 1:].sum()) * frames[0, 0].numel() / run.world
                batch = {k: v[run.part(cfg.dec_batch)] for k, v in full.items()}
                loss = wrapped(batch, frames[run.part(cfg.dec_batch)], norm)
                parts = {"recon": loss.detach() * run.world}
            else:
                B = {"dynamics": cfg.dyn_batch, "selfforce": cfg.sf_batch, "heads": cfg.heads_batch}[name]
                T = cfg.seq_frames if name == "dynamics" else cfg.sf_blocks + 1
                full = dynamics_batch(data, latents, g, B, T, cfg, selfforce=name != "dynamics")
                # 2. normalise by the *global* count of target frames so that averaging over processes is exact
                targets = full["valid"] & (torch.arange(T)[None] >= full["prefix"][:, None])  # generated frames
                norm = {"frames": max(float(targets.sum()), 1.0) / run.world}
                batch = {k: v[run.part(B)] for k, v in full.items()}
                with autocast(cfg.bf16):
                    loss, parts = wrapped(batch, norm)
                parts = {k: v * run.world for k, v in parts.items()}
            # 3. one optimizer step (DDP averages the gradients across processes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            ran += 1
            seen += 1
            done = step + 1
            # 4. log and checkpoint
            if run.rank == 0 and (done % cfg.log_every == 0 or done == total):
                rate = seen / max(time.time() - t0, 1e-9)
                row = {"stage": name, "step": done, "of": total, "loss": float(loss.detach()) * run.world, "lr": opt.param_groups[0]["lr"],
                       "grad_norm": float(gnorm), **{k: float(v) for k, v in parts.items()}, "steps_per_s": rate, "elapsed_s": time.time() - t_begin}  # fmt: skip
                logf.write(json.dumps(row) + "\n")
                logf.flush()
                log.info("%s %d/%d loss %.5f %s | %.2f it/s eta %.0fs", name, done, total, row["loss"],
                         " ".join(f"{k} {float(v):.5f}" for k, v in parts.items()), rate, (total - done) / max(rate, 1e-9))  # fmt: skip
            last = done == total
            stop = stop_after is not None and ran >= stop_after
            if done % cfg.ckpt_every == 0 or last or stop:
                if name == "autoencoder" and last:
                    set_latent_stats(model, data.frames, step_generator(cfg.seed, name, total))
                nxt_stage, nxt_step = (STAGES[si + 1] if si + 1 < len(STAGES) else "done", 0) if last else (name, done)
                if average is not None and done >= cfg.sf_average_from and (done % cfg.ckpt_every == 0 or last):
                    if average.add(done) and run.rank == 0:
                        average.save()
                    if last:
                        average.apply()  # the stage ends on the average of its checkpoints from sf_average_from
                if run.rank == 0:
                    checkpoint.save(model, ckpt, extra={"stage": nxt_stage, "step": nxt_step, "data": str(data_path)})
                    if last:
                        opt_path.unlink(missing_ok=True)
                    else:
                        save_optimizer(opt, opt_path)
                run.barrier()
            if stop:
                if logf:
                    logf.close()
                return out / "model"
    # 5. the finished model: a real start-frame bank, saved as its own checkpoint folder
    fill_start_bank(model, data)
    final = out / "model"
    if run.rank == 0:
        checkpoint.save(model, final, extra={"data": str(data_path), "train_config": to_dict(cfg), "train_seconds": time.time() - t_begin})
        log.info("finished: %s", final)
    run.barrier()
    if logf:
        logf.close()
    return final


def init_model(init: str | Path, mc: WorldModelConfig, init_stage: str = "dynamics") -> Model:
    """The model of ``--init`` for a run of config ``mc``: the same config, or the same but ``fused_commit``.

    A model without ``denoise_heads`` gains them, started as copies of its commit heads.
    Starting at the dynamics stage, the dynamics config (and the name, fps and real twin: e.g. the same frames
    under a frame-skip twin) may differ: the run
    then keeps ``init``'s autoencoder (weights, latent statistics, start bank) and trains a
    new dynamics from scratch on its latents (a different width, depth or patch size).
    Starting at the decoder stage, the decoder's widths (and the name) may differ: the run
    keeps everything else and trains a new decoder from scratch (a narrower, faster one).
    """
    model = checkpoint.load(init)
    want, got = to_dict(mc), to_dict(model.config)
    if got == want:
        return model

    def frames_side(config: dict) -> dict:  # what the autoencoder fixes: not the dynamics, the name, or the twin's pace and name
        return {k: v for k, v in config.items() if k not in ("name", "dynamics", "fps", "real_twin")}

    def but_decoder(config: dict) -> dict:  # everything but the decoder's widths (and the name)
        return {k: ({**v, "decoder_widths": None} if k == "autoencoder" else v) for k, v in config.items() if k != "name"}

    def fresh_but(prefix: str, extra: dict) -> Model:  # a new model of config mc with every weight of init outside prefix
        fresh = Model(mc)
        result = fresh.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}, strict=False)
        assert not result.unexpected_keys and all(k.startswith(prefix) for k in result.missing_keys), result
        fresh.extra = extra
        return fresh

    if init_stage == "dynamics" and frames_side(got) == frames_side(want):
        return fresh_but("dynamics.", {"autoencoder_from": str(init)})
    if init_stage == "decoder" and but_decoder(got) == but_decoder(want):
        return fresh_but("autoencoder.decoder.", {"decoder_from_scratch": True, "weights_from": str(init)})
    got["dynamics"]["fused_commit"] = True
    if got != want or model.config.dynamics.fused_commit:
        raise ConfigError(f"--init model {init} has a different model config than {mc.name!r} in the training config; "
                         f"initialise from a model built with the same config (or the same without fused_commit), "
                         f"or with --init-stage dynamics from one with the same autoencoder, action and sampler, "
                         f"or with --init-stage decoder from one that differs only in autoencoder.decoder_widths")  # fmt: skip
    fused = Model(mc)
    result = fused.load_state_dict(model.state_dict(), strict=False)
    assert not result.unexpected_keys and all(k.startswith("dynamics.denoise_heads.") for k in result.missing_keys), result
    fused.dynamics.denoise_heads.load_state_dict(model.dynamics.heads.state_dict())
    fused.extra = dict(model.extra)
    return fused


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default=None, help="YAML dump of TrainConfig, e.g. configs/cartpole.yaml (default: a recipe sized to the data, see --recipe)")
    parser.add_argument("--recipe", default="default", choices=["default", "tiny"], help="without a config: the data-sized recipe's scale (tiny: a few steps)")
    parser.add_argument("--name", default=None, help="without a config: the model's name, worldgym/<NAME>-v0 (default: from the dataset's env)")
    parser.add_argument("--data", required=True, nargs="+", help="dataset folder(s) written by `worldgym record`")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, log.jsonl, model/); rerun to resume")
    parser.add_argument("--stop-after", type=int, default=None, help="stop after this many optimizer steps (resume later)")
    parser.add_argument("--init", default=None, help="start a new run from this model's weights (same model config; with --init-stage dynamics, only its autoencoder when the dynamics config differs)")
    parser.add_argument("--init-stage", default="dynamics", choices=STAGES, help="stage --init starts at")
    parser.add_argument(
        "--install", default=None, type=install_destination, metavar="NAME_OR_PATH",
        help="copy the finished model (replacing what is there): a bare NAME goes to the user models directory "
             "(WORLDGYM_MODELS, else $XDG_DATA_HOME/worldgym/models; default ~/.local/share/worldgym/models), where "
             "`import worldgym` registers it as worldgym/<config name>-v0; a path with a '/' is used as given, "
             "e.g. assets/models/cartpole",
    )  # fmt: skip


def install_destination(value: str) -> Path:
    """Where ``--install VALUE`` copies the model: the user models directory's ``VALUE`` for a bare name, else the path."""
    if any(sep and sep in value for sep in ("/", os.sep, os.altsep)):
        return Path(value)
    if value in ("", ".", ".."):
        raise argparse.ArgumentTypeError(f"--install takes a model name or a path with a '/', got {value!r}; e.g. --install MyCartPole")
    return user_models_dir() / value


def check_install_destination(dest: Path) -> None:
    """Refuse to install over anything but a model folder (``--install`` replaces what is there)."""
    if not dest.exists():
        return
    if dest.is_dir() and (dest / "config.json").is_file() and (dest / "model.safetensors").is_file():
        return  # a checkpoint folder: replaced by the new model
    raise ConfigError(
        f"--install {dest}: it exists and is not a model folder (expected config.json and model.safetensors in it); "
        "installing would replace it. Pick a new name or path, or remove it yourself"
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if args.install:
        check_install_destination(args.install)  # before any training: a bad destination fails at once
    if args.config is not None:
        cfg = load_yaml(TrainConfig, args.config)
    elif Path(args.out, "config.yaml").is_file():  # resuming a run that started from the data-sized recipe
        cfg = load_yaml(TrainConfig, Path(args.out, "config.yaml"))
    else:
        from worldgym.training.recipes import data_recipe

        cfg = data_recipe(args.data, args.name, args.recipe)
        log.info("no config: %s recipe sized to the data: %s", args.recipe, cfg.model)
    final = train(cfg, args.data, args.out, args.stop_after, args.init, args.init_stage)
    if args.install and final.is_dir() and int(os.environ.get("RANK", "0")) == 0:
        dest = args.install
        check_install_destination(dest)
        staged = dest.with_name(dest.name + ".installing")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(final, staged)  # a complete copy first, so a failure never leaves half a model at dest
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staged, dest)
        print(f"installed {final} -> {dest}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0
