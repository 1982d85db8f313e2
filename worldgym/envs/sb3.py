"""`SB3VecEnv`: Stable-Baselines3's `VecEnv` over the native batched `WorldModelVectorEnv`.

SB3 normally vectorizes with `DummyVecEnv`, a Python loop over single envs: for a world
model that is one model forward per env per step. This adapter gives SB3 the native
batch instead: every SB3 step is one `WorldModelVectorEnv.step`, one forward for all envs.

```python
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecFrameStack, VecMonitor
from worldgym.envs.sb3 import SB3VecEnv

venv = VecMonitor(VecFrameStack(SB3VecEnv.make("worldgym/CartPole-v0", 8, obs_type="latent"), 4))
PPO("MlpPolicy", venv).learn(10_000)
```

SB3's conventions, as `DummyVecEnv` keeps them:

- a row whose episode ends is reset in the same step (the vector env's ``SAME_STEP``
  autoreset, or a masked reset under ``DISABLED``): the returned observation is the new
  episode's first, ``infos[i]["terminal_observation"]`` the ended episode's last, and
  ``infos[i]["TimeLimit.truncated"]`` is True when it was cut by the time limit and not
  terminated; ``dones = terminated | truncated``;
- ``infos`` is a list of one dict per env (the step's info of that row); ``reset_infos``
  holds each row's last reset info (``start_index``);
- ``seed(s)`` seeds env i with ``s + i`` at the next ``reset()``, and ``set_options``
  gives the next reset's options (one dict for all, or one per env);
- ``get_attr`` / ``set_attr`` / ``env_method`` address the envs by index. The rows share
  one model, so an attribute is the batched env's (``observation_space`` and
  ``action_space`` are the single env's); ``env_method("render")`` gives each row's frame,
  ``env_method("get_state")`` / ``env_method("set_state", s)`` snapshot and restore rows,
  and any other method runs once on the batched env (for every index at once).

Stable-Baselines3 is an optional dependency (``pip install "worldgym[sb3]"``); importing
this module without it raises `gymnasium.error.DependencyNotInstalled`.

Dimension letters: B number of envs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

try:
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise gym.error.DependencyNotInstalled(
        'worldgym.envs.sb3 needs Stable-Baselines3: pip install "worldgym[sb3]" (or pip install stable-baselines3)'
    ) from e

from worldgym.envs.vector_env import WorldModelVectorEnv

ROW_METHODS = ("render", "get_state", "set_state")  # env_method names answered row by row


class SB3VecEnv(VecEnv):
    """A `WorldModelVectorEnv` as an SB3 `VecEnv`: one model forward for all ``num_envs`` per step.

    Args:
        venv: a `WorldModelVectorEnv` whose ``autoreset_mode`` is ``SAME_STEP`` or
            ``DISABLED`` (``NEXT_STEP`` returns a reset row one step late, which SB3 does
            not expect). `make` builds one from an id.
    """

    def __init__(self, venv: WorldModelVectorEnv) -> None:
        venv = getattr(venv, "unwrapped", venv)
        if not isinstance(venv, WorldModelVectorEnv):
            raise TypeError(f"SB3VecEnv wraps a worldgym WorldModelVectorEnv, got {type(venv).__name__}; use SB3VecEnv.make(id, num_envs)")
        if venv.autoreset_mode == AutoresetMode.NEXT_STEP:
            raise ValueError(
                "SB3VecEnv needs a vector env with autoreset_mode SAME_STEP or DISABLED, got NEXT_STEP; "
                'build it with gym.make_vec(id, num_envs, autoreset_mode="SameStep") or use SB3VecEnv.make(id, num_envs)'
            )
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self.actions: np.ndarray | None = None

    @classmethod
    def make(cls, env_id: str, num_envs: int, **kwargs: Any) -> SB3VecEnv:
        """``gym.make_vec(env_id, num_envs, vectorization_mode="vector_entry_point", autoreset_mode=SAME_STEP, **kwargs)``, adapted."""
        venv = gym.make_vec(
            env_id, num_envs, vectorization_mode="vector_entry_point", autoreset_mode=AutoresetMode.SAME_STEP, **kwargs
        )
        return cls(venv)

    # ------------------------------------------------------------------ reset / step
    def _batched_options(self) -> dict[str, Any] | None:
        """SB3's per-env reset options as the vector env's batched ones (each key given for every env, or none)."""
        given = [o for o in self._options if o]
        if not given:
            return None
        keys = set(given[0])
        if len(given) != self.num_envs or any(set(o) != keys for o in given):
            raise ValueError(
                f"reset options must give the same keys for every env (the rows reset together), got {self._options}"
            )
        return {k: [o[k] for o in self._options] for k in keys}

    def reset(self) -> np.ndarray:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        obs, info = self.venv.reset(seed=seeds, options=self._batched_options())
        self.reset_infos = self._row_infos(info, np.ones(self.num_envs, np.bool_))
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self.actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self.actions is None:
            raise RuntimeError("step_wait() without step_async(actions)")
        actions, self.actions = self.actions, None
        obs, reward, terminated, truncated, info = self.venv.step(actions)
        done = terminated | truncated  # (B,)
        infos = self._row_infos(info, np.ones(self.num_envs, np.bool_))
        final_obs = info.get("final_obs")
        if done.any() and self.venv.autoreset_mode == AutoresetMode.DISABLED:  # SB3 resets in the same step
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done).tolist():
                final_obs[i] = obs[i].copy()
            new_obs, reset_info = self.venv.reset(options={"reset_mask": done.copy()})
            obs[done] = new_obs[done]
            self._store_reset_infos(reset_info, done)
        elif done.any():
            self._store_reset_infos({}, done)
        for i in range(self.num_envs):
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if done[i]:
                infos[i]["terminal_observation"] = final_obs[i]
        return obs, reward.astype(np.float32), done, infos

    def _row_infos(self, info: dict[str, Any], rows: np.ndarray) -> list[dict[str, Any]]:
        """The vector env's batched info (arrays with ``_key`` masks) as one dict per env."""
        out: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for key, value in info.items():
            if key.startswith("_") or key in ("final_obs", "final_info"):
                continue
            mask = info.get(f"_{key}", rows)
            for i in np.flatnonzero(mask & rows).tolist():
                out[i][key] = value[i]
        return out

    def _store_reset_infos(self, info: dict[str, Any], rows: np.ndarray) -> None:
        for i, row_info in enumerate(self._row_infos(info, rows)):
            if rows[i]:
                self.reset_infos[i] = row_info

    def close(self) -> None:
        self.venv.close()

    # ------------------------------------------------------------------ attributes and methods, by env index
    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            return [None] * self.num_envs
        return list(self.venv.render())

    def _attr_name(self, name: str) -> str:
        return {"observation_space": "single_observation_space", "action_space": "single_action_space"}.get(name, name)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.venv, self._attr_name(attr_name))  # AttributeError if the env has none, as SB3 expects
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if sorted(self._get_indices(indices)) != list(range(self.num_envs)):
            raise ValueError(
                f"the {self.num_envs} envs share one batched env, so set_attr({attr_name!r}) sets it for all of them; "
                f"pass indices=None, got {indices!r}"
            )
        setattr(self.venv, self._attr_name(attr_name), value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        rows = list(self._get_indices(indices))
        if method_name == "render":
            frames = self.venv.render()
            return [None if frames is None else frames[i] for i in rows]
        if method_name == "get_state":
            return [self.venv.get_state([i]) for i in rows]
        if method_name == "set_state":
            for i in rows:
                self.venv.set_state([i], *method_args, **method_kwargs)
            return [None] * len(rows)
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)  # once for the whole batch
        return [result] * len(rows)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))  # rows of one batched env, never wrapped one by one
