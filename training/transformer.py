"""A small causal decoder-only character language model, its attention written out so it can be measured.

Shapes: tokens (batch, T) → logits (batch · T, vocabulary), one next-character prediction per position, flattened so
the engine's cross-entropy reads them as it reads any classifier's. Parameters register in forward order.

Per training forward each attention layer records, detached, the largest attention logit q·k/√d_head over heads and
unmasked positions and the mean entropy (nats) of its attention rows; ``Measures`` adds the output's mean log Z and
hands them to the engine as 0-d tensors for the step's one transfer. ``probe`` (a list, as for the MLP) records each
block's feed-forward pre-activation h (gradient retained) and its activation, and on that step only each layer's
attention entropy per head and the attention of the first window's first ``PATTERN`` positions (``attention_probe``).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn

EMBED_STD = 0.02  # token and position embeddings and an untied output layer, N(0, 0.02²) as GPT-2
FF_MULT = 4  # feed-forward width = 4 · d_model
NORMS = ("pre", "post")  # LayerNorm before each sublayer (GPT-2), or after the residual add (Vaswani et al. 2017)
POSITIONS = ("learned", "sinusoidal")
SCHEDULES = ("constant", "cosine")
MAX_HEADS = 8
# The smallest diagonal attention weight read as a row's anchor for log Z: above it, log p is within ~3e-6 of exact
# (a float32 s - max s near -44 rounds by ~3e-6); below it the row's largest weight is the anchor.
SEEN = 2.0 ** -64
LOG_SEEN = math.log(SEEN)  # the same bound on log p, the form the measures compare
PATTERN = 32  # positions of the attention pattern a probe keeps: 32 x 32 per head, small enough to draw and store
# The config fields that shape the transformer or switch its mitigations: the lab shows them for it alone.
FIELDS = ("n_layers", "d_model", "n_heads", "context", "norm_position", "qk_norm", "positions", "tie_embeddings",
          "z_loss")


def sinusoidal(context: int, d: int) -> torch.Tensor:
    """(context, d) positions of Vaswani et al. 2017: sin on even features, cos on odd ones."""
    pos = torch.arange(context, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    out = torch.zeros(context, d)
    out[:, 0::2], out[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return out


class Attention(nn.Module):
    def __init__(self, d: int, heads: int, qk_norm: bool):
        super().__init__()
        self.heads, self.d_head = heads, d // heads
        self.qkv = nn.Linear(d, 3 * d)
        # qk-layernorm (Dehghani et al. 2023; Wortsman et al. 2023): q and k normalised per head before the product
        self.q_norm = nn.LayerNorm(self.d_head) if qk_norm else None
        self.k_norm = nn.LayerNorm(self.d_head) if qk_norm else None
        self.proj = nn.Linear(d, d)
        self.keep = False  # True: keep a training forward's scores and weights (tests recompute the measures from them)
        self.probed: tuple[torch.Tensor, torch.Tensor] | None = None  # a probe step's (entropy per head, pattern)

    def forward(self, x: torch.Tensor, future: torch.Tensor, stats: list | None, probing: bool = False
                ) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, self.d_head).transpose(1, 2) for z in self.qkv(x).split(d, dim=-1))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        raw = (q * (1.0 / math.sqrt(self.d_head))) @ k.transpose(-2, -1)  # (b, heads, t, t): q·k/√d_head
        # No position sees a later one: its score is the lowest float, so its weight is exactly 0 (exp underflows, as
        # from -inf) and its product with that weight is 0, not the NaN of 0 · -inf: the measures read Σ p·s off
        # these scores, already in cache, instead of the raw ones.
        scores = raw.masked_fill(future[:t, :t], torch.finfo(raw.dtype).min)
        weights = scores.softmax(dim=-1)
        if stats is not None:
            with torch.no_grad():
                stats.append((*layer_measures(scores, weights), weights.shape[:-1].numel()))
                if probing:  # (heads,) and (heads, P, P): the first window's first positions
                    entropy = row_log_z(scores, weights)[1] - (weights * scores).sum(-1)  # (b, heads, t)
                    self.probed = entropy.mean(dim=(0, 2)), weights[0, :, :PATTERN, :PATTERN].clone()
        if self.keep and self.training:
            self.last_scores, self.last_weights = scores.detach(), weights.detach()
        return self.proj((weights @ v).transpose(1, 2).reshape(b, t, d))


def layer_measures(scores: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One attention layer's largest allowed logit, and the sums over its rows of log Z and of Σ p·s, as 0-d
    tensors, from its scores q·k/√d_head (the lowest float where a position would see a later one) and their
    softmax, both (b, heads, t, t). The rows' mean entropy is (Σ log Z - Σ p·s) / rows (``mean_entropy``), taken
    on the host: the difference and the division are two small ops a layer the step need not wait for.

    The entropy of a row is -Σ p log p = log Z - Σ p·s (log p = s - log Z; a masked p is 0, and so is its p·s); Σ p·s
    over every row at once is one dot product. log Z = s - log p at any position whose weight is not 0, and each
    position sees itself: the diagonal, t of a row's t² numbers. Where a diagonal weight has underflowed (attention
    collapsed onto another position, a logit gap past ~44 nats) the row's largest weight serves instead
    (``row_log_z``), at two more passes over the scores.
    """
    ps = torch.dot(weights.view(-1), scores.view(-1))
    own = weights.diagonal(dim1=-2, dim2=-1).log()
    # A GPU would wait for this answer: there the row maxima are the cheaper way.
    if weights.is_cpu and own.amin().item() > LOG_SEEN:
        return scores.amax(), (scores.diagonal(dim1=-2, dim2=-1) - own).sum(), ps
    top, log_z = row_log_z(scores, weights)
    return top.amax(), log_z.sum(), ps


def mean_entropy(log_z_sum: float, ps_sum: float, rows: int) -> float:
    """The mean entropy of ``rows`` attention rows, in nats, from ``layer_measures``' two sums (float64)."""
    return (log_z_sum - ps_sum) / rows


def row_log_z(scores: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each attention row's largest score and its log Z = max s - log max p, (b, heads, t) each: the largest weight
    is exp(max s - log Z) ≥ 1/t, so it never underflows."""
    top = scores.amax(-1)
    return top, top - weights.amax(-1).log()


class FeedForward(nn.Module):
    def __init__(self, d: int, activation: nn.Module):
        super().__init__()
        self.fc, self.act, self.out = nn.Linear(d, FF_MULT * d), activation, nn.Linear(FF_MULT * d, d)

    def forward(self, x: torch.Tensor, probe: list | None) -> torch.Tensor:
        h = self.fc(x)
        a = self.act(h)
        if probe is not None:
            h.retain_grad()
            probe.append((h, a))
        return self.out(a)


class Block(nn.Module):
    """Pre-LN: x + f(LN(x)) (GPT-2); Post-LN: LN(x + f(x)) (Vaswani et al. 2017)."""

    def __init__(self, d: int, heads: int, activation: nn.Module, pre: bool, qk_norm: bool):
        super().__init__()
        self.pre = pre
        self.ln1, self.attn = nn.LayerNorm(d), Attention(d, heads, qk_norm)
        self.ln2, self.ff = nn.LayerNorm(d), FeedForward(d, activation)

    def forward(self, x, future, stats, probe):
        if self.pre:
            x = x + self.attn(self.ln1(x), future, stats, probe is not None)
            return x + self.ff(self.ln2(x), probe)
        x = self.ln1(x + self.attn(x, future, stats, probe is not None))
        return self.ln2(x + self.ff(x, probe))


class TransformerLM(nn.Module):
    def __init__(self, vocab: int, context: int, d: int, layers: int, heads: int, activation: type[nn.Module],
                 pre: bool = True, qk_norm: bool = False, positions: str = "learned", tied: bool = True):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(context, d) if positions == "learned" else None
        if self.pos is None:
            self.register_buffer("pos_table", sinusoidal(context, d), persistent=False)
        self.blocks = nn.ModuleList(Block(d, heads, activation(), pre, qk_norm) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d) if pre else None  # Post-LN's last block already ends in a LayerNorm
        self.head = nn.Linear(d, vocab, bias=False)
        if tied:
            self.head.weight = self.tok.weight  # one parameter, registered once (as tok.weight)
        self.register_buffer("future", torch.ones(context, context, dtype=torch.bool).triu(1), persistent=False)
        self.stats: list = []  # the last training forward's per layer: layer_measures' three numbers and its rows
        self.measure = True  # False: the model alone, no attention measures (bench/transformer_cost.py's bare loop)

    def forward(self, idx: torch.Tensor, probe: list | None = None) -> torch.Tensor:
        t = idx.shape[1]
        x = self.tok(idx) + (self.pos.weight[:t] if self.pos is not None else self.pos_table[:t])
        stats = [] if self.training and self.measure else None
        for block in self.blocks:
            x = block(x, self.future, stats, probe)
        if stats is not None:
            self.stats = stats
        if self.ln_f is not None:
            x = self.ln_f(x)
        return self.head(x).reshape(-1, self.head.out_features)

    @torch.no_grad()
    def attention_probe(self) -> dict:
        """The last probe step's attention, as numpy: ``attn_head_entropy`` (layers, heads) in nats, and the pattern
        of the head whose entropy is lowest (the most peaked), ``attn_pattern`` (P, P) with its ``attn_pattern_layer``
        and ``attn_pattern_head``; empty before any probe step."""
        probed = [b.attn.probed for b in self.blocks]
        if any(p is None for p in probed):
            return {}
        entropy = torch.stack([e for e, _ in probed]).double()
        layer, head = divmod(int(torch.nan_to_num(entropy, nan=math.inf).argmin()), entropy.shape[1])
        pattern = probed[layer][1][head].float().cpu().numpy()  # float32: up to 512 probes a run keep one
        return {"attn_head_entropy": entropy.cpu().numpy(), "attn_pattern": pattern, "attn_pattern_layer": layer,
                "attn_pattern_head": head}

    def linears(self) -> list[nn.Linear]:
        """The layers the config's init fills (the embeddings and the output layer keep EMBED_STD)."""
        return [m for b in self.blocks for m in (b.attn.qkv, b.attn.proj, b.ff.fc, b.ff.out)]


def build(cfg, vocab: int, activation: type[nn.Module], fill, g: torch.Generator) -> TransformerLM:
    """The model for ``cfg``; ``fill(weight, bias, cfg, g)`` is the config's init, from generator ``g`` alone."""
    net = TransformerLM(vocab, cfg.context, cfg.d_model, cfg.n_layers, cfg.n_heads, activation,
                        cfg.norm_position == "pre", cfg.qk_norm, cfg.positions, cfg.tie_embeddings)
    with torch.no_grad():
        for emb in (net.tok.weight, *(() if net.pos is None else (net.pos.weight,)),
                    *(() if cfg.tie_embeddings else (net.head.weight,))):
            nn.init.normal_(emb, 0.0, EMBED_STD, generator=g)
        for lin in net.linears():
            fill(lin.weight, lin.bias, cfg, g)
    return net


def param_count(cfg, vocab: int) -> int:
    d, f = cfg.d_model, FF_MULT * cfg.d_model
    ln = 2 * d
    qk = 4 * (d // cfg.n_heads) if cfg.qk_norm else 0
    block = (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d) + 2 * ln + qk
    n = vocab * d + cfg.n_layers * block
    n += cfg.context * d if cfg.positions == "learned" else 0
    n += ln if cfg.norm_position == "pre" else 0
    return n + (0 if cfg.tie_embeddings else vocab * d)


# What a step costs in units of large-product flops (see config.step_flops). Per token and layer, beyond the
# products: the layer norms, softmax and measures over the (heads, T) scores, ~10 elementwise passes.
PER_SCORE = 60  # each attention score: product, scale, mask, softmax, entropy, forward and backward
TEST_TOKENS = 128  # held-out windows of the pycode set (text.TEST_WINDOWS)


def step_flops(cfg, vocab: int) -> float:
    """Work of the costliest step: forward and backward of a batch, and a forward pass over the held-out windows."""
    tokens, t = cfg.batch_size * cfg.context, cfg.context
    d, layers = cfg.d_model, cfg.n_layers
    macs = layers * 12 * d * d + vocab * d  # per token: qkv, proj, feed-forward, output layer
    scores = layers * cfg.n_heads * t  # attention scores per token
    per_token = 2 * macs + 2 * scores * d // cfg.n_heads + PER_SCORE * scores
    return 3 * tokens * per_token + TEST_TOKENS * t * per_token + 400 * param_count(cfg, vocab)


def activation_count(cfg) -> int:
    """Values one forward pass holds: per token and layer ~12·d_model and two (heads × T) score maps."""
    per_layer = 12 * cfg.d_model + 2 * cfg.n_heads * cfg.context
    return cfg.batch_size * cfg.context * cfg.n_layers * per_layer


ACTIVATION_SHAPE = "batch_size x context x n_layers x (12 d_model + 2 n_heads x context)"


def columns(n_layers: int) -> list[str]:
    """The measures' row columns, after every other column: per layer, then the output's."""
    return ([f"attn_logit_max/{i}" for i in range(n_layers)] + [f"attn_entropy/{i}" for i in range(n_layers)]
            + ["logit_log_z"])


class Measures:
    """The transformer's part of a step: the z-loss in the objective, and its measures for the step's transfer."""

    def __init__(self, cfg, model: TransformerLM | None):
        self.model, self.z_loss = model, cfg.z_loss
        # The loss is the cross-entropy (the language model's only loss but mse): log Z can be read off it.
        self.cross_entropy = getattr(cfg, "loss", "auto") != "mse"
        self.columns = columns(cfg.n_layers) if model is not None else []
        # The last step's measures as 0-d tensors for the step's one transfer: each layer's largest logit, each
        # layer's sum of log Z, each layer's sum of p·s, the output's mean log Z; ``finish`` turns their host values
        # into columns.
        self.tail: list[torch.Tensor] = []
        self.rows: list[int] = []  # the attention rows each layer's sums are over

    def objective(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What backward differentiates; sets ``tail``.

        The z-loss (Chowdhery et al. 2022; Wortsman et al. 2023) adds z · mean(log Z²) to the objective only: the
        loss column stays the cross-entropy in nats per character, comparable with and without it.
        """
        if self.model is None:
            return loss
        if self.z_loss > 0:
            log_z = logits.logsumexp(dim=-1)  # (batch · T,)
            loss, mean_log_z = loss + self.z_loss * log_z.square().mean(), log_z.detach().mean()
        elif self.cross_entropy:  # cross-entropy = mean(log Z - the target's logit): a gather, not a second logsumexp
            mean_log_z = loss.detach() + logits.detach().gather(1, y.reshape(-1, 1)).mean()
        else:  # detached: no graph is built for a measure
            mean_log_z = logits.detach().logsumexp(dim=-1).mean()
        stats = self.model.stats
        self.tail = [*(s[0] for s in stats), *(s[1] for s in stats), *(s[2] for s in stats), mean_log_z]
        self.rows = [s[3] for s in stats]
        return loss

    def finish(self, sent: list[float]) -> list[float]:
        """The host values of ``tail`` → the row's values in ``columns`` order."""
        n = len(self.rows)
        return [*sent[:n], *map(mean_entropy, sent[n:2 * n], sent[2 * n:3 * n], self.rows), *sent[3 * n:]]


NO_MEASURES = Measures(SimpleNamespace(z_loss=0.0), None)  # every other model: no columns, nothing sent


def check(cfg) -> tuple[str, object, str] | None:
    """A transformer setting that does not fit the others, as (field, value, why), or None."""
    if cfg.d_model % cfg.n_heads:  # every head takes d_model / n_heads features
        fits = [h for h in range(1, MAX_HEADS + 1) if cfg.d_model % h == 0]
        return "n_heads", cfg.n_heads, f"allowed with d_model {cfg.d_model}: {', '.join(map(str, fits))} (a divisor)"
    return None
