"""Attention and masks shared by every family's step modules (plain tensors, export-friendly).

Shapes: B batch, T new tokens, S keys (past + new), Hq query heads, Hkv key/value heads, D head dim.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

class Traced:
    """A setting that step modules read while they are traced, changed for the span of a `with` block
    (export paths that need another graph form: NPU float16, ONNX Runtime kernels)."""

    def __init__(self, value: object) -> None:
        self.value = value

    @contextlib.contextmanager
    def set(self, value: object) -> Iterator[None]:
        saved, self.value = self.value, value
        try:
            yield
        finally:
            self.value = saved


# Additive mask value: finite so a row with every key masked (a left-pad query) gives a uniform
# softmax instead of NaN; exp(-1e9) is exactly 0 in float32, so real rows are unaffected.
NEG = Traced(-1e9)
SCALED_NORM = Traced(False)


def scaled_norms() -> contextlib.AbstractContextManager[None]:
    """Trace RMS norms that stay within float16 (`rms_norm`): for graphs an NPU runs in float16."""
    return SCALED_NORM.set(True)


def mask_value(value: float) -> contextlib.AbstractContextManager[None]:
    """Trace graphs with another additive mask value. NPU graphs (export/formats/onnx_npu.py) need a moderate
    one: -1e9 is -inf in float16 (a fully masked left-pad row becomes NaN and reaches real rows
    through 0 * NaN) and would stretch an activation quantization range over nine decades."""
    return NEG.set(value)


def causal_bias(attention_mask: torch.Tensor, q_slots: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """[B, S] 1/0 key mask, [T] cache slots of the new tokens -> additive [B, 1, T, S]: key j is
    visible to new token i if j <= q_slots[i] and the mask marks j as a real token; with a sliding
    `window`, also q_slots[i] - j < window (Hugging Face's rule). Slot distances are position
    distances: a row's padding sits before all its real tokens, whose slots are consecutive."""
    k_pos = torch.arange(attention_mask.shape[1], device=attention_mask.device)  # [S]
    seen = k_pos[None, :] <= q_slots[:, None]
    if window is not None:
        seen = seen & (k_pos[None, :] > q_slots[:, None] - window)
    visible = seen[None, None] & (attention_mask[:, None, None, :] > 0)
    return torch.where(visible, 0.0, NEG.value)


class KVWrite:
    """Where a step module puts the keys and values of its new tokens; every family's step calls it.

    Default (`slots` is None): appended to the past, so the cache grows by T tokens a step (dynamic
    shapes: ONNX, OpenVINO). Static shapes (TFLite, NPUs): the cache has a fixed number of slots C,
    `slots` [T] names the ones the new tokens take, and the attention mask [B, C] marks which slots
    hold real tokens. `steps.static.Named(slots_at=...)` sets `slots` from the cache_position input for one forward.
    With `inplace` (the torch-compile engine's preallocated cache), slot writes go into the past tensor
    itself, which the step returns as its present: no copy of the whole cache per step.
    Ring caches (static shapes, `rings`): a sliding layer's cache of W < C rows; steps call `cache` and
    `bias` with the layer's window, which give a ring layer its own keys and mask.
    """

    def __init__(self) -> None:
        self.slots: torch.Tensor | None = None
        # static shapes with ring caches (`Named(rings=...)` sets them for one forward): the windows
        # whose layers keep a ring of W rows instead of C slots, and C
        self.rings: frozenset[int] = frozenset()
        self.length = 0
        # dynamic shapes with a `logits_index` input (steps.Picked sets it for one forward): the positions
        # of this step's T tokens whose logits the step returns
        self.picks: torch.Tensor | None = None
        self.inplace = False  # slot writes into the past tensor (reference/compiled.py), not a new one

    def last(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden states the LM head reads, from x [B, T, E]: the last position [B, E]; with `picks`
        [n], positions picks of every row, row-major [B*n, E] (one, the last, in a plain step; a
        speculative verify step's k+1). Only these rows pay for the LM head."""
        if self.picks is None:
            return x[:, -1]
        return x.index_select(1, self.picks).reshape(-1, x.shape[-1])

    def ring(self, window: int | None) -> bool:
        """Whether a layer with this sliding `window` keeps a ring cache in this forward: the token at
        cache slot s lives in ring row s % W, so the cache holds W rows instead of C."""
        return self.slots is not None and window is not None and window in self.rings

    def query_slots(self, t: int, s: int, device: torch.device) -> torch.Tensor:
        """[T] the new tokens' places among the S keys (T5 and the paper family derive positions from it)."""
        return torch.arange(t, device=device) + (s - t) if self.slots is None else self.slots

    def bias(self, attention_mask: torch.Tensor, t: int, window: int | None = None) -> torch.Tensor:
        """The causal (and, with `window`, sliding-window) additive mask of this step's T new tokens;
        for a ring layer, over the keys `cache` gives the attention: the W ring rows, then the T new."""
        if window is not None and self.ring(window):
            assert self.slots is not None
            return ring_bias(attention_mask, self.slots, window)
        return causal_bias(attention_mask, self.query_slots(t, attention_mask.shape[1], attention_mask.device),
                           window)

    def append(self, past: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """past [B, H, P or C, D] + new [B, H, T, D] -> the cache the attention reads."""
        if self.slots is None:
            return torch.cat([past, new], dim=2)
        if self.inplace:
            return past.index_copy_(2, self.slots, new.to(past.dtype))
        return write_slots(past, new, self.slots)

    def cache(self, past: torch.Tensor, new: torch.Tensor,
              window: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """past + new [B, H, T, D] -> (the keys or values the attention reads, the cache the step outputs).
        The same tensor (`append`) except for a ring layer: the attention reads the W ring rows and the
        T new tokens side by side (`bias` masks them), and the step outputs the ring with the new
        tokens written at rows slot % W (for T > W only the last W: the others would be overwritten)."""
        if window is None or not self.ring(window):
            k = self.append(past, new)
            return k, k
        assert self.slots is not None
        slots, kept = self.slots, new
        if new.shape[2] > window:  # T is static per signature: slice at trace time
            slots, kept = slots[-window:], new[:, :, -window:]
        return torch.cat([past, new], dim=2), write_slots(past, kept, ring_rows(self.length, window, slots))


def ring_rows(length: int, window: int, slots: torch.Tensor) -> torch.Tensor:
    """slots % window, as rows gathered from a table over all `length` slots: the table depends on
    constants only (folded at export), so the graph has no Mod (a gather, as `rotary_gathered`)."""
    return (torch.arange(length, device=slots.device) % window).index_select(0, slots)


def ring_bias(attention_mask: torch.Tensor, slots: torch.Tensor, window: int) -> torch.Tensor:
    """Additive [B, 1, T, W + T] mask of T new tokens at consecutive cache slots `slots` [T] over a
    ring of W rows followed by the new tokens themselves. Ring row j holds slot
    s_j = the largest s < start with s % W == j (start = slots[0]); it is visible to new token i iff
    s_j >= 0, the mask marks s_j as a real token and slots[i] - s_j < W. New key i' is visible to i
    iff i' <= i, i - i' < W and the mask marks its slot. Built from constants and inputs only."""
    w, t = window, slots.shape[0]
    r = ring_rows(attention_mask.shape[1], w, slots[:1])  # [1] start % W
    j = torch.arange(w, device=slots.device)
    held = slots[:1] - r + j - w * (j >= r).to(slots.dtype)  # [W] s_j: base + j, one lap back past r
    real = attention_mask.index_select(1, held.clamp(min=0)) > 0  # [B, W]
    seen = (held[None, :] >= 0) & (slots[:, None] - held[None, :] < w)  # [T, W]
    ring = seen[None, None] & real[:, None, None, :]
    i = torch.arange(t, device=slots.device)
    causal = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < w)  # [T, T]
    new = causal[None, None] & (attention_mask.index_select(1, slots) > 0)[:, None, None, :]
    return torch.where(torch.cat([ring, new], dim=-1), 0.0, NEG.value)


def write_slots(cache: torch.Tensor, new: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """cache [B, H, C, D] with rows `slots` [T] replaced by new [B, H, T, D], in plain element-wise
    and MatMul ops that every converter and NPU compiler takes (index_copy becomes a general scatter,
    which TFLite runs outside XNNPACK and HTP does not accept). One token: a select against the
    slot's one-hot column (as fast as TFLite's DYNAMIC_UPDATE_SLICE, faster than the one-hot
    product). Several: a one-hot matrix product, exact in float
    (each output element is one product with 1.0 plus zeros)."""
    rows = torch.arange(cache.shape[2], device=cache.device)
    if new.shape[2] == 1:
        return torch.where((rows == slots[0])[:, None], new, cache)
    one_hot = (rows[:, None] == slots[None, :]).to(cache.dtype)  # [C, T]
    keep = 1.0 - one_hot.sum(dim=1, keepdim=True)  # [C, 1]
    return cache * keep + one_hot @ new


def padding_bias(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, S] 1/0 key mask -> additive [B, 1, 1, S] (bidirectional and cross attention)."""
    return torch.where(attention_mask[:, None, None, :] > 0, 0.0, NEG.value)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v -> [B, T, Hq * D]; bias None: every key visible (no mask op).

    q [B, Hq, T, D]; k, v [B, Hkv, S, D]; bias broadcastable to [B, Hq, T, S].
    Grouped-query attention folds the query heads of a group into the rows of their shared K/V
    head ([B, Hkv, rep * T, D]), so no step copies or broadcasts the cache: query head h uses K/V
    head h // (Hq // Hkv). A 5-D form that broadcast K/V over the group instead ran far slower on
    TFLite (a BROADCAST_TO of the whole cache per layer).
    """
    b, hq, t, d = q.shape
    hkv = k.shape[1]
    rep = hq // hkv
    if rep > 1:
        q = q.reshape(b, hkv, rep * t, d)  # rows ordered (query head in group, token)
        # one bias for all heads: rows that differ per token repeat per head
        if bias is not None and bias.shape[1] == 1:
            bias = bias.repeat(1, 1, rep, 1) if bias.shape[2] > 1 else bias  # [B, 1, rep * T or 1, S]
        elif bias is not None:  # per-head bias [B, Hq, T, S] -> [B, Hkv, rep * T, S]
            bias = bias.reshape(bias.shape[0], hkv, rep * t, bias.shape[-1])
    scores = q @ k.transpose(-1, -2) * scale
    w = torch.softmax(scores if bias is None else scores + bias, dim=-1)
    o = (w @ v).reshape(b, hq, t, d)
    return o.transpose(1, 2).reshape(b, t, hq * d)


def heads(x: torch.Tensor, n: int, d: int) -> torch.Tensor:
    """[B, T, n * d] -> [B, n, T, d]."""
    return x.reshape(x.shape[0], x.shape[1], n, d).transpose(1, 2)


def rotary(positions: torch.Tensor, inv_freq: torch.Tensor, scaling: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables for positions [B, T]: cos, sin [B, 1, T, D] (D = 2 * len(inv_freq))."""
    freqs = positions[..., None].float() * inv_freq  # [B, T, D/2]
    angles = torch.cat([freqs, freqs], dim=-1)[:, None]
    return angles.cos() * scaling, angles.sin() * scaling


def rotary_gathered(positions: torch.Tensor, length: int, inv_freq: torch.Tensor,
                    scaling: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """`rotary` for positions below `length`, as rows gathered from a table of all of them: the table
    depends on constants only (folded at export), so no float math runs on positions (static NPU graphs,
    where a quantized position would lose the precision a rotation angle needs)."""
    cos, sin = rotary(torch.arange(length, device=positions.device)[None], inv_freq, scaling)  # [1, 1, L, D]
    rows = positions.reshape(-1)
    shape = (positions.shape[0], 1, positions.shape[1], cos.shape[-1])
    return cos[0, 0].index_select(0, rows).reshape(shape), sin[0, 0].index_select(0, rows).reshape(shape)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply rotary embeddings (rotate-half convention) to x [B, H, T, D]; tables narrower than D
    (partial rotary, R = cos.shape[-1] < D) rotate the first R dims of each head and keep the rest."""
    r = cos.shape[-1]
    if r < x.shape[-1]:
        return torch.cat([rotate(x[..., :r], cos, sin), x[..., r:]], dim=-1)
    half = r // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def rms_norm(norm: torch.nn.Module, x: torch.Tensor, offset: float = 0.0) -> torch.Tensor:
    """A model's RMS norm module (Llama's, T5's, the paper family's) applied as
    weight * x / sqrt(mean(x^2) + eps): the node pattern (Pow, ReduceMean, Add, Sqrt, Div, Mul) that
    ONNX Runtime fuses into one SimplifiedLayerNormalization kernel. The modules' own x * rsqrt(...)
    exports as Sqrt + Reciprocal + Mul, which no runtime fuses: six nodes per norm per step.
    `offset` 1.0: Gemma's norms, which scale by (1 + weight)."""
    weight = norm.weight + offset if offset else norm.weight
    eps = getattr(norm, "variance_epsilon", None)
    eps = norm.eps if eps is None else eps
    if SCALED_NORM.value:
        # x / rms(x) = y / rms(y) for y = x / s: with s = max(|x|, 1) no square exceeds 1, where
        # SmolLM2's residual stream (values up to ~24,500) squares to 6e8, past float16's 65,504
        # (HTP's float graphs ran SmolLM2's layers to garbage: no token agreed with the CPU)
        # (y * rsqrt, not y / sqrt: ONNX Runtime's CPU provider fuses the latter into its RMS-norm
        # kernel with a constant epsilon, dropping this one, which depends on s: wrong logits).
        # HTP divides by multiplying with the reciprocal, and 1 / 24,500 is below float16's smallest
        # normal number (6.1e-5): flushed to 0, the massive token's whole norm was 0. Dividing twice
        # by sqrt(s) keeps each reciprocal normal (s up to 2.7e8).
        r = torch.sqrt(x.abs().amax(-1, keepdim=True).clamp(min=1.0))
        y = x / r / r
        t = eps**0.5 / r / r  # eps / s^2 without forming s^2
        return weight * (y * torch.rsqrt((y * y).mean(-1, keepdim=True) + t * t))
    return weight * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps))
