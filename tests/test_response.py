"""The sustained-action response protocol (`worldgym.evaluation.response`)."""

import numpy as np
import pytest
from conftest import tiny_model

from worldgym.data.dataset import Episode
from worldgym.engine import WorldModel
from worldgym.evaluation.response import coasting_response, format_response, held_step_response, sample_points, sustained_response


def episodes_of(model, count: int = 3, steps: int = 12, seed: int = 0) -> list[Episode]:
    """Random-frame episodes whose ``states`` hold (episode, frame) so a simulator can find its context."""
    ae = model.config.autoencoder
    rng = np.random.default_rng(seed)
    out = []
    for e in range(count):
        obs = rng.integers(0, 256, (steps + 1, ae.frame_height, ae.frame_width, 3), dtype=np.uint8)
        states = np.array([[e, t] for t in range(steps + 1)], dtype=np.float64)
        out.append(Episode(obs, rng.integers(2, size=steps), np.zeros(steps, np.float32), np.zeros(steps, bool), np.zeros(steps, bool), states=states))
    return out


def channel_means(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(frames.shape[0], -1, 3).mean(1)  # (B, 3)


def test_a_simulator_that_is_the_model_itself_gives_ratio_one_and_no_error():
    """The simulator replays the same model from the same context, actions and seed: the protocol must find them equal.

    Any misalignment (context actions shifted, a different held action, another seed) shows as an error.
    """
    model = tiny_model()
    episodes = episodes_of(model)
    context, calls = 3, []

    def simulate(state, action, steps):
        e, t = int(state[0]), int(state[1])
        ep = episodes[e]
        frames = ep.observations[t - context + 1 : t + 1][None]
        actions = [[ep.actions[t - context + f] if t - context + f >= 0 else 0 for f in range(context)]]
        engine = WorldModel(model, 1)
        p = len(calls)
        engine.reset(None, frames, actions, seeds=[5 + p])
        calls.append(action)
        return np.stack([engine.step([action]).frames[0].numpy() for _ in range(steps)]), steps

    result = sustained_response(model, episodes, simulate, channel_means, ["r", "g", "b"], n=6, context=context, holds=(1, 4), seed=5)
    assert result["points"] == 6 and len(calls) == 6
    for s in (1, 4):
        assert result["holds"][s]["points"] == 6
        for name in "rgb":
            v = result["holds"][s][name]
            assert v["abs_error"] < 1e-3, (s, name, v)
            assert v["model"] == pytest.approx(v["real"], abs=1e-3)
    assert "S=4" in format_response(result)


def test_a_world_that_does_not_move_shows_up_as_a_different_response():
    model = tiny_model()
    episodes = episodes_of(model)

    def frozen(state, action, steps):  # the real world never changes from the context's last frame
        ep = episodes[int(state[0])]
        return np.repeat(ep.observations[int(state[1])][None], steps, 0), steps

    result = sustained_response(model, episodes, frozen, channel_means, ["r", "g", "b"], n=4, context=2, holds=(2,), seed=1)
    row = {k: v for k, v in result["holds"][2].items() if k != "points"}
    assert all(v["real"] == 0.0 for v in row.values())
    assert max(v["abs_error"] for v in row.values()) > 0.5  # a random model does move the frame
    # teacher-forced inside the hold: the same frozen world, one step from its real frames
    held = held_step_response(model, episodes, frozen, channel_means, ["r", "g", "b"], steps=(1, 3), n=4, context=2, seed=1)
    assert set(held["steps"]) == {1, 3} and held["steps"][3]["points"] == 4
    assert all(held["steps"][3][c]["real"] == 0.0 for c in "rgb")
    assert "teacher-forced" in format_response(result, held)


def test_points_past_the_real_end_are_not_compared():
    model = tiny_model()
    episodes = episodes_of(model)

    def ends_after_two(state, action, steps):
        ep = episodes[int(state[0])]
        return np.repeat(ep.observations[int(state[1])][None], steps, 0), 2

    result = sustained_response(model, episodes, ends_after_two, channel_means, ["r", "g", "b"], n=4, context=2, holds=(2, 3), seed=1)
    assert result["holds"][2]["points"] == 4 and result["holds"][3]["points"] == 0


def test_points_respect_context_and_filter_and_need_states():
    model = tiny_model()
    episodes = episodes_of(model, steps=6)
    rng = np.random.default_rng(0)
    points = sample_points(episodes, 30, 4, rng, keep=lambda s: s[1] % 2 == 0)
    assert all(t >= 3 and t < 6 and t % 2 == 0 for _, t in points)
    with pytest.raises(ValueError, match="only 0 of 5 points"):
        sample_points(episodes, 5, 4, rng, keep=lambda s: False)
    for ep in episodes:
        ep.states = None
    with pytest.raises(ValueError, match="recorded states"):
        sample_points(episodes, 5, 4, rng)


def test_coasting_against_the_model_itself_is_exact_and_cycles_the_actions():
    """The simulator replays the model with the action list it is given: coasting must find no difference.

    The list must alternate 0 and 1 (the default cycle) from some phase, one action per step.
    """
    model = tiny_model()
    episodes = episodes_of(model)
    context, calls = 3, []

    def simulate(state, actions, steps):
        assert isinstance(actions, list) and len(actions) == steps
        assert all(a != b for a, b in zip(actions, actions[1:])) and set(actions) <= {0, 1}
        e, t = int(state[0]), int(state[1])
        ep = episodes[e]
        engine = WorldModel(model, 1)
        engine.reset(None, ep.observations[t - context + 1 : t + 1][None], [[ep.actions[t - context + f] if t - context + f >= 0 else 0 for f in range(context)]],
                     seeds=[5 + len(calls)])  # fmt: skip
        calls.append(actions)
        return np.stack([engine.step([a]).frames[0].numpy() for a in actions]), steps

    result = coasting_response(model, episodes, simulate, channel_means, ["r", "g", "b"], n=6, context=context, holds=(2, 5), seed=5)
    assert len(calls) == 6 and len({c[0] for c in calls}) == 2  # both phases drawn
    for s in (2, 5):
        for name in "rgb":
            v = result["holds"][s][name]
            assert v["abs_error"] < 1e-3 and v["model"] == pytest.approx(v["real"], abs=1e-3), (s, name, v)
            assert v["real"] >= 0  # signed by the real change's direction
    assert "coasting" in format_response(result, coast=result)


def test_coasting_reports_the_size_of_the_real_motion_whatever_its_direction():
    model = tiny_model()
    episodes = episodes_of(model)

    def drifting(state, actions, steps):  # the real world brightens (even episodes) or darkens (odd) by 10 a step
        last = episodes[int(state[0])].observations[int(state[1])].astype(np.int32)
        d = 10 if int(state[0]) % 2 == 0 else -10
        return np.stack([np.full_like(last, 128 + d * (k + 1)) for k in range(steps)]).astype(np.uint8), steps

    result = coasting_response(model, episodes, drifting, lambda f: f.reshape(f.shape[0], -1).mean(1, keepdims=True), ["level"], n=8, context=2, holds=(1, 3), seed=2)
    assert result["holds"][1]["points"] == result["holds"][3]["points"] == 8
    # the change is measured from the last context frame (random pixels, mean about 127.5), so its size is about 10 s
    assert abs(result["holds"][3]["level"]["real"] - 30) < 5
    with pytest.raises(ValueError, match="at least 2 actions"):
        coasting_response(model, episodes, drifting, channel_means, ["r", "g", "b"], n=2, context=2, cycle=(1,))
