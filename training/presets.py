"""The presets: each a lesson, a problem and the one setting whose change fixes it, with the claim the test suite
checks (tests/test_lessons.py, tests/test_transformer_lessons.py). Part of the registry (``registry.PRESETS``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """A lesson: a problem, the one setting whose change fixes it, and a claim the test suite checks by training
    both through the engine (tests/test_lessons.py; the numbers it measures are in docs/science.md).

    Loading a preset loads the problem; ``fix`` names the one field the fix changes and its new value.
    """

    claim: str  # one sentence, with the numbers the suite measures
    overrides: dict  # the problem, over Config's defaults
    fix: dict  # exactly one field -> its value in the fix
    speed: float | None = None  # steps per second it is shown at: slow enough to watch an explosion; None: max

    @property
    def summary(self) -> str:
        """One line: the claim and the one change (the preset picker's caption and ``python -m training presets``)."""
        (name, value), = self.fix.items()
        return f"{self.claim} One change: {name} → {value}."


SEED_NET = {"model": "mlp", "hidden_sizes": (512, 256, 128), "dataset": "digits"}
# The lessons' language model, its shape given in full: it was measured at this shape, whatever the defaults become.
LM = {"model": "transformer", "dataset": "pycode", "n_layers": 2, "d_model": 64, "n_heads": 4, "context": 64,
      "batch_size": 16, "optimizer": "adam", "lr": 0.03, "steps": 300}
N01 = {"activation": "relu", "init": "normal", "init_std": 1.0}  # the seed's N(0, 1) weights: far too large
SGD = {"optimizer": "sgd", "lr": 0.01, "steps": 300}
# Cohen et al. (2021)'s setting at digit scale: full-batch gradient descent (batch_size 0: the whole training set),
# a small tanh MLP, the square loss on one-hot targets, the sharpness measured every 20 steps.
EOS = {"model": "mlp", "hidden_sizes": (64, 64), "dataset": "digits", "activation": "tanh", "init": "xavier_normal",
       "optimizer": "sgd", "lr": 0.1, "batch_size": 0, "loss": "mse", "steps": 2000, "sharpness_every": 20,
       "clip": "none"}

PRESETS: dict[str, Preset] = {
    "watch it explode": Preset(
        "The seed's 784-512-256-128-10 ReLU net with N(0, 1) weights starts at a loss near 6e4 and goes non-finite "
        "at step ~5; norm clipping at 1.0 alone keeps all 300 steps finite.",
        {**SEED_NET, **N01, **SGD, "clip": "none"}, {"clip": "norm"}, speed=2.0),
    "clip it": Preset(
        "Clipping stops the NaN, not its cause: the clipped N(0, 1) net survives 300 steps yet stays near loss 1e4 "
        "and ~30% test accuracy, its updates a tiny fraction of its weights; He init alone (still clipped) reaches "
        "~94%.",
        {**SEED_NET, **N01, **SGD, "clip": "norm", "clip_threshold": 1.0}, {"init": "kaiming_normal"}),
    "a step too large": Preset(
        "A learning rate past the stability edge: a two-layer linear net (784-128-10) at lr 0.2 starts healthy "
        "(loss ≈ ln 10) but with a sharpness of ~31, three times 2/lr = 10, and its loss climbs for ~45 steps "
        "until it goes non-finite; at lr 0.05 (2/lr = 40) its sharpness stays below the edge and it reaches ~94%.",
        {"model": "mlp", "hidden_sizes": (128,), "dataset": "digits", "activation": "identity",
         "init": "pytorch_default", **SGD, "lr": 0.2, "clip": "none", "sharpness_every": 5}, {"lr": 0.05},
        speed=4.0),
    "edge of stability": Preset(
        "Full-batch gradient descent finds the edge of stability: a 784-64-64-10 tanh net trained on all 1437 "
        "digits with the square loss starts with a sharpness of ~52, drops below 2/lr, sharpens back up to it and "
        "hovers within 15% of it while its loss keeps falling; doubling the learning rate from 0.1 to 0.2 halves "
        "the plateau, from ~20 to ~10, and its loss then rises on some steps.",
        EOS, {"lr": 0.2}),
    "clip a large learning rate": Preset(
        "Norm clipping rescues an explosion caused by the learning rate: the seed net with PyTorch's default init "
        "at lr 1 goes non-finite within ~20 steps; clipped at 1.0 it reaches ~94%.",
        {**SEED_NET, "activation": "relu", "init": "pytorch_default", **SGD, "lr": 1.0, "clip": "none"},
        {"clip": "norm"}, speed=3.0),
    "AGC and norm clipping both train": Preset(
        "Adaptive gradient clipping rescues the same explosion: the seed net with PyTorch's default init at lr 1 "
        "goes non-finite at step ~18; AGC at λ = 0.02 (no unit's gradient above 2% of its weights) reaches ~94%, "
        "as norm clipping at 1.0 does.",
        {**SEED_NET, "activation": "relu", "init": "pytorch_default", **SGD, "lr": 1.0, "clip": "none",
         "clip_threshold": 0.02}, {"clip": "agc"}, speed=3.0),
    "fix the init": Preset(
        "On a 20-layer ReLU net PyTorch's default init (variance 1/(3·fan_in)) shrinks the signal at every layer "
        "and the loss stays at ln 10 (chance); He init (variance 2/fan_in) alone reaches ~95%.",
        {"model": "mlp", "hidden_sizes": (128,) * 20, "dataset": "digits", "activation": "relu",
         "init": "pytorch_default", **SGD, "clip": "none"}, {"init": "kaiming_normal"}),
    "deep tanh vanishes": Preset(
        "30 tanh layers with N(0, 0.05) weights: the backward signal dies toward the input and the loss stays at "
        "ln 10; Xavier init alone (χ = 1 for tanh) reaches ~95%.",
        {"model": "mlp", "hidden_sizes": (128,) * 30, "dataset": "digits", "activation": "tanh",
         "init": "normal", "init_std": 0.05, **SGD, "clip": "none"}, {"init": "xavier_normal"}),
    "leaky ReLU changes little here": Preset(
        "Not every textbook cure shows here: with Xavier init the seed net learns with ReLU (~95%) and with "
        "LeakyReLU (~95%) alike; the init does the work, the activation's negative slope adds nothing measurable.",
        {**SEED_NET, "activation": "relu", "init": "xavier_normal", **SGD, "clip": "none"},
        {"activation": "leaky_relu"}),
    "RNN on long sequences explodes": Preset(
        "The recurrent matrix decides: a ReLU RNN on the adding problem (length 50) at spectral radius 1.6 "
        "multiplies the signal at every step through time, forward (loss ~800 at step 0) and backward, and goes "
        "non-finite at step ~1; at radius 0.9 the backward signal fades back in time instead and training stays "
        "finite (it vanishes: stuck at the mean).",
        {"model": "rnn", "activation": "relu", "dataset": "adding", "seq_len": 50, "hidden_size": 64,
         "init": "spectral_radius", "spectral_radius": 1.6, **SGD, "clip": "none"}, {"spectral_radius": 0.9},
        speed=1.0),
    "attention logits grow": Preset(
        "Attention-logit growth (Wortsman et al. 2023): a 2-layer character transformer under Adam at lr 0.03 sees its "
        "largest attention logit grow from ~2 to ~10⁴ and a layer's attention entropy collapse to ~0 while the loss "
        "stalls near 2.8 nats per character; qk-layernorm alone keeps the logit under ~20 and reaches ~2.5.",
        {**LM, "qk_norm": False}, {"qk_norm": True}),
    "log Z drifts without z-loss": Preset(
        "Without z-loss the output's log Z starts at ln 97 ≈ 4.6 and drifts up (~6.0 after 300 steps); z-loss 1e-2 "
        "alone holds it near 0 at the same loss (the paper's 1e-4 barely moves it in 300 steps at this scale).",
        {**LM, "qk_norm": True, "z_loss": 0.0}, {"z_loss": 0.01}),
    "Post-LN needs warmup": Preset(
        "Post-LN needs warmup (Xiong et al. 2020): at lr 0.01 under Adam a 4-layer Pre-LN character transformer "
        "trains to ~2.6 nats per character, but with Post-LN and no warmup it stays at ~3.14, the unigram entropy "
        "of a constant guess, its attention uniform (at init its feed-forward gradient norms do not fall toward "
        "the output as Pre-LN's do: last ÷ first layer ~1.1 against ~0.5); 100 warmup steps alone bring it to ~2.5.",
        {**LM, "n_layers": 4, "lr": 0.01, "norm_position": "post", "warmup_steps": 0}, {"warmup_steps": 100}),
}
