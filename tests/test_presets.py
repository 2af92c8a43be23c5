"""The presets as a registry: each is a lesson whose problem and fix are valid configs, listed with its claim.

What each lesson claims is checked through the engine in tests/test_lessons.py.
"""

import numpy as np
import pytest

from training import lessons as LS
from training import registry as R
from training.cli import main
from training.config import Config
from training.engine import Trainer
from training.runner import SPEED_RANGE


@pytest.mark.parametrize("name", list(R.PRESETS))
def test_each_preset_loads_a_valid_problem_and_fix_and_a_speed_the_runner_takes(name):
    assert isinstance(LS.problem(name), Config) and isinstance(LS.fix(name), Config)
    speed = R.PRESETS[name].speed
    assert speed is None or SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]


def test_presets_command_lists_each_lesson_with_its_claim_and_its_one_change(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name, preset in R.PRESETS.items():
        line = next(line for line in out.splitlines() if line.startswith(name))
        field, _, new = LS.change(name)
        assert preset.claim in line and f"{field} → {new}" in line


def test_rnn_lesson_draws_the_pascanu_picture_at_its_first_probe():
    # Radius 1.6: going back in time, ∂h_t/∂h_{t-1} multiplies the backward signal at (almost) every step.
    t = Trainer(LS.problem("RNN on long sequences explodes").replace(probe_every=1), "cpu")
    back = t.step().probe["time_backward_norm"]
    assert back[0] > 10 * back[-1]
    assert np.mean(np.diff(np.log(back)) < 0) > 0.8
    # Radius 0.9, the one change: the signal fades going back in time.
    fixed = Trainer(LS.fix("RNN on long sequences explodes").replace(probe_every=1), "cpu").step()
    back = fixed.probe["time_backward_norm"]
    assert back[0] < 1e-3 * back[-1]
