"""Start banks cut from recorded episodes: windows, actions, and every env surface resetting from them."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from conftest import tiny_model
from worldgym.data.dataset import DatasetWriter
from worldgym.envs.env import WorldModelEnv
from worldgym.envs.starts import StartBank
from worldgym.envs.torchrl_env import TorchRLWorldModelEnv
from worldgym.envs.vector_env import WorldModelVectorEnv

OBS = spaces.Box(0, 255, (16, 16, 3), np.uint8)
ACT = spaces.Discrete(3)


def write_dataset(path, lengths=(5, 9, 3), terminated=True):
    """Episodes whose frame t of episode e is filled with 10 * e + t, and whose action t is (e + t) % 3."""
    with DatasetWriter(path, OBS, ACT) as w:
        for e, T in enumerate(lengths):
            obs = np.stack([np.full((16, 16, 3), 10 * e + t, np.uint8) for t in range(T + 1)])
            term = np.zeros(T, bool)
            term[-1] = terminated
            w.add_episode(obs, np.array([(e + t) % 3 for t in range(T)]), np.ones(T, np.float32), term, ~term & False)
    return path


def test_windows_are_consecutive_real_frames_with_the_actions_that_led_to_them(tmp_path):
    bank = StartBank.from_datasets(write_dataset(tmp_path / "ds"), context=3, size=200, seed=0)
    assert bank.frames.shape == (200, 3, 16, 16, 3) and bank.actions.shape == (200, 3)
    lengths = (5, 9, 3)
    seen = set()
    for k in range(len(bank)):
        codes = bank.frames[k, :, 0, 0, 0].tolist()
        e, t0 = codes[0] // 10, codes[0] % 10
        assert codes == [10 * e + t0 + c for c in range(3)]  # consecutive frames of one episode
        assert t0 + 2 <= lengths[e] - 1  # the last frame is never the terminal frame T
        for c in range(3):  # frame t was reached by action t - 1; the first frame of an episode has none
            t = t0 + c
            assert bank.actions[k, c].item() == ((e + t - 1) % 3 if t > 0 else 0)
        seen.add((e, t0))
    # every window of every episode is drawn: episode e has lengths[e] - 2 windows of 3 live frames
    assert seen == {(e, t) for e, T in enumerate(lengths) for t in range(T - 2)}


def test_bad_banks_are_refused(tmp_path):
    ds = write_dataset(tmp_path / "ds")
    with pytest.raises(ValueError, match="the model needs"):
        StartBank.from_datasets(ds, context=2, frame_size=(64, 64))
    with pytest.raises(ValueError, match="lower the context"):
        StartBank.from_datasets(ds, context=10)
    with pytest.raises(ValueError, match="one action per frame"):
        StartBank(torch.zeros(4, 2, 16, 16, 3, dtype=torch.uint8), torch.zeros(4, 3, dtype=torch.int64))
    big = StartBank(torch.zeros(2, 2, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="model needs 16x16"):
        WorldModelEnv(tiny_model(), starts=big)
    long = StartBank(torch.zeros(2, 5, 16, 16, 3, dtype=torch.uint8))  # tiny cache: sink 1 + window 3
    with pytest.raises(ValueError, match="at most 4"):
        TorchRLWorldModelEnv(tiny_model(), batch_size=[2], starts=long)


def test_every_env_resets_from_the_bank_with_its_actions(tmp_path):
    bank = StartBank.from_datasets(write_dataset(tmp_path / "ds"), context=2, size=16, seed=1)
    model = tiny_model()
    env = WorldModelEnv(model, obs_type="latent", starts=bank)
    _, info = env.reset(seed=3)
    assert 0 <= info["start_index"] < 16
    k = 5  # given, so that the env draws the same engine seed as a reset from explicit frames
    obs, info = env.reset(seed=3, options={"start_index": k})
    assert info["start_index"] == k
    step = env.step(1)[0]
    # the same context given explicitly, with the bank entry's actions, gives the same cache: same next block
    ref = WorldModelEnv(model, obs_type="latent")
    frames, actions = bank.entry(k)
    ref_obs, _ = ref.reset(seed=3, options={"frames": frames.numpy(), "actions": actions})
    np.testing.assert_array_equal(obs, ref_obs)
    np.testing.assert_array_equal(step, ref.step(1)[0])
    # without the actions the commit passes see other conditioning: the next block differs
    ref.reset(seed=3, options={"frames": frames.numpy()})
    assert not np.array_equal(step, ref.step(1)[0])

    vec = WorldModelVectorEnv(model, num_envs=3, starts=bank)
    vobs, vinfo = vec.reset(seed=0, options={"start_index": [0, 5, 7]})
    np.testing.assert_array_equal(vobs, bank.frames[[0, 5, 7], -1].numpy())

    trl = TorchRLWorldModelEnv(model, batch_size=[4], starts=bank)
    trl.set_seed(0)
    td = trl.reset()
    last = bank.frames[:, -1]  # (K, H, W, 3)
    for row in td["pixels"]:
        assert any(torch.equal(row, f) for f in last)
