"""The run configuration: a frozen dataclass that validates itself.

Every field carries its allowed range (or choices) and a one-line help text in its metadata;
the CLI flags, the URL query parameters and the dashboard controls are all generated from it.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace

from . import cost
from . import registry as R
from . import transformer as TF
from .data import ACCURACY_TOLERANCE, FULL_BATCH, TASKS, TEST_EXAMPLES, TRAIN_EXAMPLES  # noqa: F401 (re-exported)
from .errors import MAX_SHOWN, ConfigError, shown  # noqa: F401 (every interface imports them from here)
from .sharpness import SUGGESTED_EVERY


def env_number(name: str, default: float, lo: float, hi: float, kind: type = int):
    """A numeric setting from the environment, refused with a ConfigError naming the variable when bad."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        v = kind(raw)
    except ValueError:
        v = None
    if v is None or not lo <= v <= hi:  # NaN fails the comparison too
        raise ConfigError(name, raw, f"allowed: a number from {lo:g} to {hi:g}")
    return v


# Resource caps so that no control can take the server down (override by env).
MAX_PARAMS = env_number("GEL_MAX_PARAMS", 50_000_000, 1, 10**12)
MAX_DEPTH = 64
# Hidden values one forward pass holds: batch x sum of widths (MLP) or batch x seq_len x hidden x gates
# (recurrent). 1e8 float32 is 400 MB per copy, and backward keeps a few copies; a batch-4096, length-1000,
# width-2048 LSTM would need ~130 GB and take the machine down.
MAX_ACTIVATIONS = env_number("GEL_MAX_ACTIVATIONS", 100_000_000, 1, 10**13)
# Work of the costliest step, so that a step (and Stop, which lands between steps) never takes much more than
# ~0.5 s: 50 GFLOP at the ~100 GFLOP/s one core of a recent server CPU sustains on large products. Raise it on
# a faster machine or a GPU.
MAX_STEP_GFLOP = env_number("GEL_MAX_STEP_GFLOP", 50.0, 0.001, 1e9, float)


def _activation_rules() -> str:
    """What each model family says about the activation: 'rnn: tanh or relu; lstm/gru use their own gates'."""
    fixed = [name for name, m in R.MODELS.items() if m.hidden_activation]
    rules = [f"{name}: {' or '.join(m.activations)}" for name, m in R.MODELS.items() if m.activations]
    return "; ".join([*rules, *(["/".join(fixed) + " use their own gates"] if fixed else [])])


def _f(default, help: str, *, choices=None, lo=None, hi=None, kind=None):
    meta = {"help": help, "choices": choices, "lo": lo, "hi": hi, "kind": kind}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Config:
    model: str = _f("mlp", "network: mlp, a recurrent " + " / ".join(R.RECURRENT_MODELS) + ", or a transformer "
                                 "(a character-level language model)", choices=R.Names(R.MODELS))
    hidden_sizes: tuple[int, ...] = _f((512, 256, 128), "MLP hidden widths, input → output (the seed's 512,256,128)",
                                       lo=1, hi=4096, kind="sizes")
    activation: str = _f("relu", f"hidden activation ({_activation_rules()})", choices=R.Names(R.ACTIVATIONS))
    init: str = _f("pytorch_default", "weight initialization", choices=R.Names(R.INITS))
    init_std: float = _f(1.0, "std of the 'normal' init (absolute, whatever the fan-in)", lo=1e-6, hi=100.0)
    spectral_radius: float = _f(1.0, "spectral radius of the recurrent matrix for the 'spectral_radius' init",
                                lo=0.01, hi=10.0)
    norm: str = _f("none", "normalization after each hidden linear layer (MLP only)",
                   choices=("none", "batch", "layer"))
    residual: bool = _f(False, "skip connections where consecutive widths match (MLP only)")
    hidden_size: int = _f(64, "recurrent hidden size", lo=1, hi=2048)
    seq_len: int = _f(50, "sequence length of the sequence datasets", lo=2, hi=1000)
    optimizer: str = _f("sgd", "sgd, sgd with momentum, adam or adamw", choices=R.Names(R.OPTIMIZERS))
    lr: float = _f(0.01, "learning rate", lo=1e-6, hi=10.0)
    momentum: float = _f(0.9, "momentum of the 'momentum' optimizer", lo=0.0, hi=0.999)
    batch_size: int = _f(64, "examples per step; full: the whole training set every step, no sampling (full-batch "
                         "gradient descent)", lo=1, hi=4096, kind="batch")
    loss: str = _f("auto", "training loss: auto (cross-entropy for classes, MSE for regression), cross_entropy, or mse "
                   "(classes as one-hot targets, the square loss of the edge-of-stability papers)",
                   choices=R.Names(R.LOSSES))
    steps: int = _f(1000, "training steps", lo=1, hi=10_000_000)
    clip: str = _f("none", "gradient clipping: none, by global norm, by value, or agc (adaptive: each "
                   "unit's gradient scaled to ‖G_i‖/max(‖W_i‖, 1e-3) ≤ λ; a unit is a weight row, or a whole bias or "
                   "gain vector; the output layer head.* is exempt)", choices=R.Names(R.CLIP_MODES))
    clip_threshold: float = _f(1.0, "max_norm (clip=norm), clip_value (clip=value) or λ (clip=agc, "
                                 "{:g} to {:g})".format(*R.CLIP_MODES["agc"].threshold), lo=1e-6, hi=1e6)
    clip_norm_type: str = _f("2", "norm used by clip=norm: 2 or inf", choices=R.Names(R.CLIP_NORM_TYPES))
    dataset: str = _f("digits", "digits or gaussian (MLP); adding or temporal_order (recurrent); pycode (transformer)",
                      choices=R.Names(R.DATASETS))
    seed: int = _f(0, "random seed: the same seed gives the same weights, batches and losses", lo=0, hi=2**31 - 1)
    device: str = _f("auto", "auto picks cuda, then mps, then cpu", choices=R.DEVICES)
    probe_every: int = _f(10, "record activation statistics and the backward signal ‖∂L/∂h‖ every N steps",
                          lo=1, hi=100_000)
    # A pass over the 360 held-out digits costs ~4 ms, 1.6 steps of the reference MLP: at every probe it was a third
    # of the training time. Test accuracy moves slowly, so it has its own, sparser schedule.
    eval_every: int = _f(50, f"evaluate test loss and accuracy (on adding: the fraction within {ACCURACY_TOLERANCE:g} "
                             "of the target) at most every N steps, on a probe step",
                         lo=1, hi=100_000)
    # Each probe takes a few Hessian-vector products (about two backward passes each): off by default, so a run
    # that does not ask for it pays nothing.
    sharpness_every: int = _f(0, "measure the sharpness (top Hessian eigenvalue of the training loss; for adam also "
                                 "the preconditioned one) every N steps on a fixed batch; 0: off; every "
                                 f"{SUGGESTED_EVERY} adds under 10% to a run", lo=0, hi=100_000)
    # The transformer (training/transformer.py): its shape, then the mitigations of its instabilities. The default
    # shape (2 x 48, context 32) takes ~60 steps a second on one CPU thread at the default batch (bench P9).
    n_layers: int = _f(2, "transformer blocks", lo=1, hi=8)
    d_model: int = _f(48, "transformer width (split evenly into n_heads heads)", lo=32, hi=256)
    n_heads: int = _f(4, "attention heads per transformer block", lo=1, hi=TF.MAX_HEADS)
    context: int = _f(32, "characters per transformer window (each position predicts the next)", lo=16, hi=256)
    norm_position: str = _f("pre", "LayerNorm before each sublayer (pre) or after its residual add", choices=TF.NORMS)
    qk_norm: bool = _f(False, "qk-layernorm: queries and keys normalised per head (bounds the attention logits)")
    positions: str = _f("learned", "transformer positions: learned, or fixed sinusoidal", choices=TF.POSITIONS)
    tie_embeddings: bool = _f(True, "the transformer's output layer shares the token embedding matrix")
    z_loss: float = _f(0.0, "transformer: z·mean(log Z²) added to the objective, not the loss column", lo=0.0, hi=1.0)
    warmup_steps: int = _f(0, "learning rate ramps linearly to lr over the first N steps (0: none)", lo=0, hi=10**7)
    schedule: str = _f("constant", "lr after warmup: constant, or cosine decay to 0 at the end", choices=TF.SCHEDULES)
    beta2: float = _f(0.999, "adam and adamw: decay of the squared-gradient average", lo=0.5, hi=0.99999)
    eps: float = _f(1e-8, "adam and adamw: ε added to the gradient's root mean square", lo=1e-12, hi=0.01)
    weight_decay: float = _f(0.0, "adamw: decoupled weight decay of the weight matrices", lo=0.0, hi=1.0)

    def __post_init__(self):
        for f in fields(self):
            _check_field(f, getattr(self, f.name))
        _check_combination(self)

    def replace(self, **changes) -> Config:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d

    def to_query(self) -> dict[str, str]:
        """Every field that differs from the default, as strings (the URL carries the whole state this way)."""
        default = Config()
        return {f.name: format_value(getattr(self, f.name), f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}

    @property
    def is_recurrent(self) -> bool:
        return R.MODELS[self.model].recurrent

    @property
    def full_batch(self) -> bool:
        return self.batch_size == FULL_BATCH


FIELDS = {f.name: f for f in fields(Config)}


def allowed_text(f) -> str:
    m = f.metadata
    if m["choices"] is not None:
        return "allowed: " + ", ".join(map(str, m["choices"]))
    if f.type in ("bool", bool):
        return "allowed: true or false"
    if m["kind"] == "sizes":
        return f"allowed: 1 to {MAX_DEPTH} comma-separated widths, each {m['lo']} to {m['hi']}"
    if m["kind"] == "batch":
        return f"allowed: {m['lo']:g} to {m['hi']:g}, or full (0: the whole training set)"
    return f"allowed: {m['lo']:g} to {m['hi']:g}"


def _check_field(f, v) -> None:
    m = f.metadata
    if m["choices"] is not None:
        if v not in m["choices"]:
            raise ConfigError(f.name, v, allowed_text(f))
    elif m["kind"] == "sizes":
        ok = (isinstance(v, tuple) and 1 <= len(v) <= MAX_DEPTH
              and all(type(w) is int and m["lo"] <= w <= m["hi"] for w in v))
        if not ok:
            raise ConfigError(f.name, v, allowed_text(f))
    elif f.type in ("bool", bool):
        if type(v) is not bool:
            raise ConfigError(f.name, v, allowed_text(f))
    else:
        if m["kind"] == "batch" and type(v) is int and v == FULL_BATCH:
            return
        numeric = type(v) is int or (f.type in ("float", float) and type(v) is float)
        # The range test comes first: math.isfinite(10**400) raises OverflowError; NaN fails the range test.
        if not numeric or not m["lo"] <= v <= m["hi"] or not math.isfinite(v):
            raise ConfigError(f.name, v, allowed_text(f))


def model_conflicts(model: str, values: Mapping) -> list[tuple[str, object, str]]:
    """The settings in ``values`` (field -> value) that ``model`` does not allow, each as (field, a value it allows,
    why), in the order the config reports them. The config refuses the first; the lab's controls switch them all."""
    family, out = R.MODELS[model], []
    fits = [d for d in R.DATASETS
            if (d in R.SEQUENCE_DATASETS, d in R.TEXT_DATASETS) == (family.recurrent, family.text)]
    if values["dataset"] not in fits:
        why = f"needs a sequence dataset: {', '.join(fits)}" if family.recurrent else f"needs {' or '.join(fits)}"
        out.append(("dataset", fits[0], f"the {model} model {why}"))
    if family.activations is not None and values["activation"] not in family.activations:
        out.append(("activation", family.activations[0], f"the {model} model allows {' or '.join(family.activations)}"))
    if values["init"] in R.RECURRENT_ONLY_INITS and not family.recurrent:
        *most, last = R.RECURRENT_MODELS
        why = f"the {values['init']} init applies to {', '.join(most)} and {last} only"
        out.append(("init", FIELDS["init"].default, why))
    flat = " and ".join(name for name, m in R.MODELS.items() if not m.recurrent and not m.text)
    layered = f"normalization and residual connections apply to the {flat} model only"
    if (family.recurrent or family.text) and values["norm"] != "none":  # the transformer has its own
        out.append(("norm", "none", layered))
    if (family.recurrent or family.text) and values["residual"]:
        out.append(("residual", False, layered))
    return out


def _check_combination(c: Config) -> None:
    for name, _, why in model_conflicts(c.model, vars(c))[:1]:
        raise ConfigError(name, getattr(c, name), why)
    _check_loss_and_batch(c)
    if R.MODELS[c.model].text and (bad := TF.check(c)):
        raise ConfigError(*bad)
    allowed = R.CLIP_MODES[c.clip].threshold
    if allowed is not None and not allowed[0] <= c.clip_threshold <= allowed[1]:
        raise ConfigError("clip_threshold", c.clip_threshold,
                          f"allowed with clip={c.clip}: {allowed[0]:g} to {allowed[1]:g}")
    n = R.param_count(c, *R.DATASET_DIMS[c.dataset])
    if n > MAX_PARAMS:
        name = "hidden_size" if c.is_recurrent else "hidden_sizes"
        raise ConfigError(name, getattr(c, name), f"the network would have {n:,} parameters; the cap is {MAX_PARAMS:,}")
    a = cost.activation_count(c)
    if a > MAX_ACTIVATIONS:
        shape = ("batch_size x seq_len x hidden_size x gates" if c.is_recurrent else TF.ACTIVATION_SHAPE
                 if R.MODELS[c.model].text else "batch_size x sum of hidden_sizes")
        raise ConfigError("batch_size", c.batch_size, f"one step would hold {a:,} activations ({shape}); "
                          f"the cap is {MAX_ACTIVATIONS:,}")
    _check_step_cost(c)


def _check_loss_and_batch(c: Config) -> None:
    task = TASKS[c.dataset]
    fits = [n for n, loss in R.LOSSES.items() if task in loss.tasks]
    if c.loss not in fits:
        raise ConfigError("loss", c.loss, f"the {c.dataset} dataset is a {task} task; allowed: {', '.join(fits)}")
    if c.full_batch and c.dataset not in TRAIN_EXAMPLES:
        fixed = " or ".join(TRAIN_EXAMPLES)
        raise ConfigError("batch_size", "full", f"full-batch training needs a fixed training set ({fixed}); "
                          f"{c.dataset} draws new sequences every step: allowed: 1 to 4096")


def _check_step_cost(c: Config) -> None:
    work, cap = cost.step_flops(c), MAX_STEP_GFLOP * 1e9
    if work <= cap:
        return
    probe = " (with its sharpness probe)" if c.sharpness_every else ""
    why = (f"one step{probe} would cost ~{work / 1e9:,.0f} GFLOP, about {work / cap * 0.5:.1f} s on a CPU core; "
           f"the cap is {MAX_STEP_GFLOP:g} GFLOP (~0.5 s, so Stop lands within a second)")
    b = max_batch_size(c)
    if b >= 1:
        shown_batch = "full" if c.full_batch else c.batch_size
        raise ConfigError("batch_size", shown_batch, f"{why}: allowed for this network: 1 to {b}")
    if not c.is_recurrent:
        raise ConfigError("hidden_sizes", c.hidden_sizes, f"{why}, even at batch_size 1: use fewer or narrower layers")
    if cost.step_flops(cost.unchecked(c, batch_size=1, hidden_size=1)) > cap:
        raise ConfigError("seq_len", c.seq_len, f"{why}, even at batch_size 1: use a shorter sequence")
    raise ConfigError("hidden_size", c.hidden_size, f"{why}, even at batch_size 1: use a smaller hidden_size")


def max_batch_size(c: Config) -> int:
    """The largest batch_size whose step stays under the step-cost cap with c's other settings (0: none does)."""
    return cost.max_batch_size(c, MAX_STEP_GFLOP * 1e9, FIELDS["batch_size"].metadata["hi"])


def format_value(v, name: str | None = None) -> str:
    if name is not None and FIELDS[name].metadata["kind"] == "batch" and v == FULL_BATCH:
        return "full"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    if isinstance(v, float):
        return repr(v)
    return str(v)


def unknown_field(name: str) -> str:
    """What to say of a field that does not exist: the nearest names, not all of them (there are ~40)."""
    near = difflib.get_close_matches(name, FIELDS, n=3, cutoff=0.5) if name.isprintable() and len(name) <= 40 else []
    if not near and "_" in name:  # learning_rate -> lr: the parts' initials
        near = [n for n in FIELDS if n == "".join(p[:1] for p in name.split("_"))]
    hint = f"did you mean {' or '.join(near)}?" if near else "python -m training config --help lists every field"
    return f"unknown field; {hint}"


def parse_value(name: str, raw):
    """Turn a raw value (a string from the CLI or URL, or a JSON value) into the field's type."""
    if not isinstance(name, str) or name not in FIELDS:
        # Quote a name that would break the one-line message (a newline, a megabyte); keep a plain typo plain.
        label = name if isinstance(name, str) and name.isprintable() and len(name) <= 40 else shown(name)
        raise ConfigError(label, raw, unknown_field(label))
    f = FIELDS[name]
    try:
        if f.metadata["kind"] == "sizes":
            if isinstance(raw, str):
                parts = [p for p in raw.replace(" ", "").split(",") if p]
                if len(parts) > MAX_DEPTH:  # refuse before building a huge tuple
                    raise ValueError
                return tuple(int(p) for p in parts)
            if isinstance(raw, (list, tuple)) and all(type(x) is int for x in raw):
                return tuple(raw)
            raise ValueError
        if f.type in ("bool", bool):
            if isinstance(raw, bool):
                return raw
            s = str(raw).strip().lower()
            if s in ("true", "1", "yes", "on"):
                return True
            if s in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if f.metadata["kind"] == "batch" and isinstance(raw, str) and raw.strip().lower() == "full":
            return FULL_BATCH
        if f.type in ("int", int):
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw.strip() if isinstance(raw, str) else raw)
        if f.type in ("float", float):
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
            raise ValueError
        return str(raw) if f.name != "clip_norm_type" else _norm_type(raw)
    except (ValueError, TypeError, OverflowError):
        raise ConfigError(name, raw, allowed_text(f)) from None


def _norm_type(raw) -> str:
    s = str(raw).strip().lower()
    return {"2.0": "2", "inf": "inf", "infinity": "inf"}.get(s, s)


def from_dict(d: Mapping, base: Config | None = None) -> Config:
    """Strict: any bad or unknown key raises ConfigError naming it."""
    if not isinstance(d, Mapping):
        raise ConfigError("config", type(d).__name__, "expected a JSON object of field: value")
    values = {k: parse_value(k, v) for k, v in d.items()}
    return replace(base or Config(), **values)


def from_query(params: Mapping[str, str], base: Config | None = None) -> tuple[Config, list[str]]:
    """Lenient, for URLs: each bad field falls back to its default and yields a message; the rest is kept."""
    if not isinstance(params, Mapping):
        raise ConfigError("query", type(params).__name__, "expected a mapping of field: value")
    cfg, errors = base or Config(), []
    values = {}
    for k, v in params.items():
        if not isinstance(k, str) or k not in FIELDS:
            continue  # other query parameters (run id, page) belong to the app
        try:
            value = parse_value(k, v)
            _check_field(FIELDS[k], value)  # the field alone: type, range, choices (model=rnn needs its dataset too)
            values[k] = value
        except ConfigError as e:
            errors.append(str(e))
    while values:
        try:
            return replace(cfg, **values), errors
        except ConfigError as e:  # fields valid alone but not together: the clashing one keeps its default
            errors.append(str(e))
            # The clash names a field the query may not have set (lstm with the default digits names the dataset);
            # then the model goes, the root of most clashes, or else the last field given.
            drop = e.field if e.field in values else "model" if "model" in values else next(reversed(values))
            values.pop(drop)
    return cfg, errors


def from_preset(name: str, **changes) -> Config:
    if name not in R.PRESETS:
        raise ConfigError("preset", name, "allowed: " + ", ".join(R.PRESETS))
    return replace(Config(), **{**R.PRESETS[name].overrides, **changes})


def why_not_live(cfg: Config, field: str) -> str | None:
    """Why a live change of ``field`` is refused on a run of ``cfg``, where the setting has no effect; None: it
    applies (the page then sends it, and shows it as waiting for the next Start otherwise)."""
    if field == "z_loss" and not R.MODELS[cfg.model].text:
        return f"a live change applies to the transformer only; this run is the {cfg.model} (it has no z-loss)"
    if field == "weight_decay" and cfg.optimizer != "adamw":
        return f"a live change applies with optimizer adamw only; this run's is {cfg.optimizer} (no weight decay)"
    return None
