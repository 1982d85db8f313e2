"""First contact: every registered ``worldgym/`` id passes the peers' checkers with default arguments.

Gymnasium's ``check_env`` (on ``env.unwrapped``, every render mode, and for neural ids on the
``gymnasium.make`` wrapper stack), SB3's ``check_env`` (on that stack), and TorchRL's ``check_env_specs`` (the native
`TorchRLWorldModelEnv` for neural ids, TorchRL's own ``GymEnv`` for every id, real twins
included). The ids come from the registry, so a newly shipped model or twin is checked
without editing this file. The generic ``worldgym/WorldModel-v0`` gets only its required
``checkpoint=`` (a tiny 48x48 model: SB3 wants images of at least 36x36); without it the
error names the argument.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import worldgym  # noqa: F401  (registers the ids)
from worldgym.envs.registration import ENTRY_POINT
from worldgym.model import checkpoint
from worldgym.model.autoencoder import AutoencoderConfig
from worldgym.model.hardware import AUTO_BF16_MIN_BATCH, auto_rule, cpu_flags, resolve_dtype, set_threads
from worldgym.model.networks import Model

from conftest import randomized, tiny_config

GENERIC = "worldgym/WorldModel-v0"
IDS = sorted(k for k in gym.registry if k.startswith("worldgym/"))
NEURAL = [k for k in IDS if gym.registry[k].entry_point == ENTRY_POINT]
WRAPPER_STACK_WARNING = "is different from the unwrapped version"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> str:
    config = tiny_config()
    config.autoencoder = AutoencoderConfig(frame_height=48, frame_width=48, latent_channels=4, widths=[8, 8])
    return str(checkpoint.save(randomized(Model(config), 1), tmp_path_factory.mktemp("ckpt") / "tiny48"))


def default_kwargs(env_id: str, tiny_ckpt: str) -> dict:
    """No arguments at all, except the checkpoint the generic id cannot do without."""
    return {"checkpoint": tiny_ckpt} if env_id == GENERIC else {}


def messages(caught: list) -> list[str]:
    return [str(w.message) for w in caught]


# ---------------------------------------------------------------------------- Gymnasium and SB3
@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env_with_default_arguments(env_id, tiny_ckpt):
    """``check_env`` on the env itself (every declared render mode, rebuilt through ``env.spec``) and, for
    the neural ids, on the ``gymnasium.make`` stack; the same seed and actions must give the same obs,
    reward and info. The twins' stack is the same registration code, checked by SB3 and TorchRL below
    (a second full check of a twin costs its resets again: seconds for Crafter's world generation)."""
    env = gym.make(env_id, **default_kwargs(env_id, tiny_ckpt))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert messages(caught) == []
    if env_id in NEURAL:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env, skip_render_check=True)  # the render modes were checked above
        assert [m for m in messages(caught) if WRAPPER_STACK_WARNING not in m] == []
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_sb3_check_env_with_default_arguments(env_id, tiny_ckpt):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(env_id, **default_kwargs(env_id, tiny_ckpt))  # what an SB3 user passes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env, warn=True)
    assert messages(caught) == []
    env.close()


# ---------------------------------------------------------------------------- TorchRL
@pytest.mark.parametrize("env_id", NEURAL)
@pytest.mark.parametrize("batch_size", [(), (4,)])
def test_torchrl_native_env_check_env_specs(env_id, batch_size, tiny_ckpt):
    from torchrl.envs.utils import check_env_specs

    from worldgym.envs.torchrl_env import TorchRLWorldModelEnv

    ckpt = tiny_ckpt if env_id == GENERIC else gym.registry[env_id].kwargs["checkpoint"]
    env = TorchRLWorldModelEnv(ckpt, batch_size=batch_size)
    check_env_specs(env, seed=0)
    assert env.dtype in ("float32", "bfloat16")


@pytest.mark.parametrize("env_id", IDS)
def test_torchrl_gym_env_check_env_specs(env_id, tiny_ckpt):
    """TorchRL's own Gymnasium wrapping works for every id; for a real twin it is the TorchRL route."""
    from torchrl.envs import GymEnv
    from torchrl.envs.utils import check_env_specs

    env = GymEnv(env_id, **default_kwargs(env_id, tiny_ckpt))
    check_env_specs(env, seed=0)
    env.close()


# ---------------------------------------------------------------------------- defaults
def test_generic_id_without_checkpoint_names_the_argument():
    for make in (lambda: gym.make(GENERIC), lambda: gym.make_vec(GENERIC, num_envs=2)):
        with pytest.raises(TypeError, match=r'checkpoint="path/to/model"') as e:
            make()
        assert all(k in str(e.value) for k in NEURAL if k != GENERIC)  # and the ids that bring their own model


def test_info_is_deterministic_and_timings_are_opt_in(tiny_ckpt):
    env = gym.make(GENERIC, checkpoint=tiny_ckpt)
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step(1)
    assert "step_time" not in info and env.unwrapped.last_step_time > 0.0
    timed = gym.make(GENERIC, checkpoint=tiny_ckpt, wall_time_info=True)
    timed.reset(seed=0)
    assert timed.step(1)[4]["step_time"] > 0.0
    envs = gym.make_vec(GENERIC, num_envs=2, checkpoint=tiny_ckpt, vectorization_mode="vector_entry_point")
    envs.reset(seed=0)
    infos = envs.step(np.array([0, 1]))[4]
    assert "step_time" not in infos and envs.last_step_time > 0.0


# ---------------------------------------------------------------------------- dtype="auto" and threads
AMX = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
PLAIN = "processor\t: 0\nflags\t\t: fpu sse2 avx2\n"


def test_auto_dtype_is_bfloat16_on_amx_cpus_at_large_batches_and_measured_on_avx512_bf16_ones(monkeypatch):
    monkeypatch.delenv("WORLDGYM_AUTO_DTYPE", raising=False)
    big = AUTO_BF16_MIN_BATCH
    assert {"amx_bf16", "amx_tile"} <= cpu_flags(AMX) and cpu_flags("no flags here") == set()
    assert resolve_dtype("auto", "cpu", big, AMX) == "bfloat16"
    assert resolve_dtype("auto", "cpu", 256, AMX) == "bfloat16"
    assert resolve_dtype("auto", "cpu", 1, AMX) == "float32"  # one env: float32 measured faster even with AMX
    assert resolve_dtype("auto", "cpu", big - 1, AMX) == "float32"
    # avx512_bf16 without AMX: bf16 was slower on one such CPU and faster on another, so it is timed
    assert auto_rule("cpu", 256, AVX512_BF16) == "measure" and auto_rule("cpu", big - 1, AVX512_BF16) == "float32"
    assert resolve_dtype("auto", "cpu", 256, AVX512_BF16) == "float32"  # nothing to time with: the reference precision
    assert resolve_dtype("auto", "cpu", 256, AVX512_BF16, measure=lambda: "bfloat16") == "bfloat16"
    assert resolve_dtype("auto", "cpu", 256, PLAIN, measure=lambda: "bfloat16") == "float32"
    assert resolve_dtype("auto", "meta", 256, AMX) == "float32"
    assert resolve_dtype("float32", "cpu", 256, AMX) == "float32" and resolve_dtype("bfloat16", "cpu", 1, PLAIN) == "bfloat16"
    with pytest.raises(ValueError, match=r"dtype must be one of \['auto', 'float32', 'bfloat16'\], got 'fp16'"):
        resolve_dtype("fp16")
    monkeypatch.setenv("WORLDGYM_AUTO_DTYPE", "bfloat16")  # fixes "auto" on any machine, at any batch
    assert resolve_dtype("auto", "cpu", 1, PLAIN) == "bfloat16" and resolve_dtype("float32", "cpu", 256, AMX) == "float32"
    monkeypatch.setenv("WORLDGYM_AUTO_DTYPE", "fp16")
    with pytest.raises(ValueError, match="WORLDGYM_AUTO_DTYPE must be 'float32' or 'bfloat16'"):
        resolve_dtype("auto")


@pytest.mark.parametrize("cpuinfo,expected", [(AMX, "bfloat16"), (AVX512_BF16, None), (PLAIN, "float32")])
def test_envs_show_the_resolved_dtype_and_how_it_was_chosen(monkeypatch, cpuinfo, expected):
    from worldgym.envs.env import WorldModelEnv
    from worldgym.envs.torchrl_env import TorchRLWorldModelEnv
    from worldgym.envs.vector_env import WorldModelVectorEnv
    from worldgym.model import hardware

    monkeypatch.delenv("WORLDGYM_AUTO_DTYPE", raising=False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda cpuinfo_=None: cpu_flags(cpuinfo))
    model = randomized(Model(tiny_config()))
    big = AUTO_BF16_MIN_BATCH
    one = WorldModelEnv(model)
    assert one.dtype == "float32" and one.dtype_choice == {"requested": "auto", "dtype": "float32", "how": "hardware"}
    envs = WorldModelVectorEnv(model, big)
    if expected is None:  # timed on this model and batch: either precision, with the figures behind the choice
        choice = envs.dtype_choice
        assert choice["how"] == "measured" and set(choice["step_ms"]) == {"float32", "bfloat16"}
        assert envs.dtype == choice["dtype"] == ("bfloat16" if choice["step_ms"]["bfloat16"] < 0.95 * choice["step_ms"]["float32"] else "float32")
        assert WorldModelVectorEnv(model, big).dtype_choice == choice  # measured once per process
        expected = choice["dtype"]
    else:
        assert envs.dtype_choice["how"] == "hardware"
    assert envs.dtype == expected and envs.engine.cache.k.dtype == getattr(torch, expected)
    assert TorchRLWorldModelEnv(model, batch_size=[big]).dtype == expected
    fixed = WorldModelVectorEnv(model, big, dtype="float32")
    assert fixed.dtype == "float32" and fixed.dtype_choice["how"] == "requested"
    monkeypatch.setenv("WORLDGYM_AUTO_DTYPE", "bfloat16")
    assert WorldModelVectorEnv(model, big).dtype_choice == {"requested": "auto", "dtype": "bfloat16", "how": "WORLDGYM_AUTO_DTYPE"}


def test_set_threads_is_process_global_and_checked():
    before = torch.get_num_threads()
    try:
        set_threads(None)
        assert torch.get_num_threads() == before
        worldgym.set_threads(2)
        assert torch.get_num_threads() == 2
        from worldgym.envs.vector_env import WorldModelVectorEnv

        WorldModelVectorEnv(randomized(Model(tiny_config())), 2, threads=1)
        assert torch.get_num_threads() == 1
        for bad in (0, -1, 1.5, True, "2"):
            with pytest.raises(ValueError, match="threads must be an int >= 1 or None"):
                set_threads(bad)
    finally:
        torch.set_num_threads(before)
