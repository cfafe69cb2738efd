"""Continuous (iteration-level) batching of decode requests on one system.

Orca-style scheduling with vLLM-style paged KV allocation (docs/sources/neupims.md §1, §7, §13):

* ``batch`` slots are kept busy; an empty slot takes the next request of a seeded stream
  drawn (with replacement) from the dataset's length statistics. The prefill runs on a
  separate standalone NPU (paper section 1), so a request joins with its input as context.
* The KV cache of a request lives in one pool of the system's :class:`~neupims.systems.kv.KvLayout`
  (a PIM channel, allocated in 32 KB tiles with the paper's key/value layouts; a GPU's
  memory, in 16-token pages) times the device's layers; a pool holds what the weights leave
  of its capacity. A new request is placed by the system's policy (``round_robin`` or
  ``gmlbp``) on a pool with room; when a growing request finds its pool full, the most
  recently admitted request there is preempted back to the head of the queue (vLLM
  recompute policy; its prefill is not charged), so capacity is never exceeded. With
  pipeline parallelism the KV kept per device is the batch's over ``layers/pp`` blocks
  (``kv_layers="stage"``, the artifact's rule) or over all layers (``"model"``: ``pp``
  batches in flight).
* Each iteration every active request produces one token. A request ends when it has
  produced its output length or its context reaches ``max_seq_len``; its slot is refilled
  at the next iteration.
* The run starts from the stationary request mix (``start_steady``), then ``warmup``
  iterations advance the state without timing; the next ``iterations`` are timed by the
  system's iteration (``System.step``). Metrics cover only those.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neupims.errors import ConfigError
from neupims.systems.base import System
from neupims.systems.placement import get_policy
from neupims.workloads.datasets import sample_requests as _dataset_sample

#: "enforce": a channel never holds more KV tiles than the weights leave (preemption);
#: "unlimited": capacity is not enforced (the artifact's trace generator; a what-if)
KV_CAPACITY_MODES = ("enforce", "unlimited")


@dataclass
class ServingStats:
    iterations: int = 0
    tokens: int = 0
    time_s: float = 0.0
    iter_latency_s: list[float] = field(default_factory=list)
    active: list[int] = field(default_factory=list)
    npu_util_time: float = 0.0  # sum of util x time, divided by time at the end
    pim_util_time: float = 0.0
    pim_busy_time: float = 0.0
    bw_util_time: float = 0.0
    dram_energy_j: float = 0.0
    npu_energy_j: float = 0.0
    load_ratio_sum: float = 0.0
    finished: int = 0
    preempted: int = 0
    admitted: int = 0
    max_tiles_used_fraction: float = 0.0

    def summary(self, devices: int) -> dict:
        t = self.time_s
        lat = np.asarray(self.iter_latency_s) if self.iter_latency_s else np.zeros(1)
        e_tok = (self.dram_energy_j + self.npu_energy_j) * devices / max(self.tokens, 1)
        return {
            "iterations": self.iterations,
            "tokens": self.tokens,
            "sim_time_s": t,
            "throughput_tokens_per_s": self.tokens / t if t > 0 else 0.0,
            "iter_latency_ms_mean": float(lat.mean() * 1e3),
            "iter_latency_ms_p99": float(np.percentile(lat, 99) * 1e3),
            "mean_active": float(np.mean(self.active)) if self.active else 0.0,
            "npu_utilisation": self.npu_util_time / t if t else 0.0,
            "pim_utilisation": self.pim_util_time / t if t else 0.0,
            "pim_busy_fraction": self.pim_busy_time / t if t else 0.0,
            "mem_bw_utilisation": self.bw_util_time / t if t else 0.0,
            "memory_power_w": self.dram_energy_j / t if t else 0.0,
            "npu_power_w": self.npu_energy_j / t if t else 0.0,
            "energy_per_token_j": e_tok,
            "dram_energy_per_token_j": self.dram_energy_j * devices / max(self.tokens, 1),
            "channel_load_max_over_mean": self.load_ratio_sum / max(self.iterations, 1),
            "finished": self.finished,
            "preempted": self.preempted,
            "max_kv_tiles_used_fraction": self.max_tiles_used_fraction,
        }


def sample_requests(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_lens, output_lens) of ``n`` requests drawn with replacement, deterministic;
    every request has at least one input and one output token."""
    i, o = _dataset_sample(name, n, seed)
    return np.maximum(np.asarray(i, np.int64), 1), np.maximum(np.asarray(o, np.int64), 1)


class Server:
    """Slots, KV pools and the request stream of one serving run."""

    def __init__(
        self,
        system: System,
        dataset: str,
        batch: int,
        seed: int,
        max_seq_len: int = 2048,
        placement: str | None = None,
        kv_layers: str = "stage",
        kv_capacity: str = "enforce",
    ):
        if batch < 1:
            raise ConfigError(f"batch must be positive, got {batch}")
        if max_seq_len < 2:
            raise ConfigError(f"max_seq_len must be at least 2, got {max_seq_len}")
        self.system = system
        self.kv = system.kv()
        self.dataset = dataset
        self.batch = batch
        self.seed = seed
        self.max_seq_len = max_seq_len
        self.policy = get_policy(placement or self.kv.placement)
        self.policy_state: dict = {}
        self.nch = self.kv.pools
        if kv_capacity not in KV_CAPACITY_MODES:
            raise ConfigError(
                f"kv_capacity must be one of {sorted(KV_CAPACITY_MODES)}, got {kv_capacity!r}"
            )
        self.capacity = self.kv.capacity
        # "unlimited": the artifact's trace generator keeps exactly `batch` requests and checks
        # capacity only afterwards (docs/sources/neupims.md §9, §13); a what-if, since the KV
        # cache may then not fit. The units used are still counted (max_tiles_used_fraction > 1).
        self.limit = self.capacity if kv_capacity == "enforce" else np.iinfo(np.int64).max // 4
        if self.capacity <= 0:
            raise ConfigError(
                f"{system.model} on {system.spec.name} with tp={system.tp}, pp={system.pp}: "
                "the weights leave no KV capacity"
            )
        # "stage": the device keeps this batch's KV for its layers/pp blocks (the NeuPIMs
        # trace generator's rule, docs/sources/neupims.md §7). "model": pp batches are in flight
        # (System.step) and the device keeps all of them, as many tiles as one batch over
        # all the model's layers (the physical count when pp batches share the device).
        if kv_layers not in ("stage", "model"):
            raise ConfigError(f"kv_layers must be 'stage' or 'model', got {kv_layers!r}")
        t = system.template
        self.layers_dev = t.stage_layers if kv_layers == "stage" else t.model_layers
        # slot state (-1 channel = empty slot)
        self.inp = np.zeros(batch, np.int64)
        self.out = np.zeros(batch, np.int64)
        self.gen = np.zeros(batch, np.int64)
        self.ch = np.full(batch, -1, np.int64)
        self.tiles = np.zeros(batch, np.int64)
        self.order = np.zeros(batch, np.int64)  # admission counter, for preemption
        self.ch_free = np.full(self.nch, self.limit, np.int64)
        self.queue: list[tuple[int, int, int]] = []  # (input, output, generated)
        self._draw = 0
        self._admissions = 0
        self.stats = ServingStats()

    # -- KV bookkeeping -----------------------------------------------------------------
    def tiles_for(self, ctx_len: np.ndarray) -> np.ndarray:
        return self.kv.units(ctx_len, self.layers_dev)

    def context(self) -> np.ndarray:
        return np.minimum(self.inp + self.gen, self.max_seq_len)

    def _next_requests(self, n: int) -> list[tuple[int, int, int]]:
        while len(self.queue) < n:
            i, o = sample_requests(self.dataset, 1024, self.seed * 1_000_003 + self._draw)
            self._draw += 1
            # an input longer than the context limit is truncated (as the trace generator's
            # min(input + generated, max)); it still produces at least one token
            i = np.minimum(i, self.max_seq_len - 1)
            self.queue.extend((int(a), int(b), 0) for a, b in zip(i, o, strict=True))
        return self.queue[:n]

    def refill(self, measuring: bool) -> None:
        empty = np.flatnonzero(self.ch < 0)
        if empty.size == 0:
            return
        cand = self._next_requests(len(empty))
        ctxlen = np.array([a + g for a, _, g in cand], np.int64)
        need = self.tiles_for(ctxlen + 1)
        act = self.ch >= 0
        loads = self.kv.load(ctxlen)
        cur = np.zeros(self.nch)
        if act.any():
            est = self.kv.load(self.context()[act])
            cur = np.bincount(self.ch[act], weights=est, minlength=self.nch)
        free = self.ch_free.astype(float)
        chans = self.policy(loads, need.astype(float), cur, free, self.policy_state)
        placed = 0
        keep = []
        for j, (slot_req, c) in enumerate(zip(cand, chans, strict=True)):
            if c < 0:
                keep.append(slot_req)
                continue
            s = empty[placed]
            placed += 1
            self.inp[s], self.out[s], self.gen[s] = slot_req
            self.ch[s] = c
            self.tiles[s] = need[j]
            self.ch_free[c] -= need[j]
            self.order[s] = self._admissions
            self._admissions += 1
            if measuring:
                self.stats.admitted += 1
        self.queue = keep + self.queue[len(cand) :]

    def start_steady(self) -> None:
        """Fill the slots with the stationary state of the renewal process instead of empty
        slots: a slot holds a request with probability proportional to its lifetime
        (min(output, max_seq_len - input) tokens) at an age uniform in that lifetime. A short
        warm-up then settles placement and capacity; this replaces thousands of warm-up
        iterations (ShareGPT outputs reach 1000+ tokens)."""
        rng = np.random.default_rng(self.seed * 7919 + 17)
        i, o = sample_requests(self.dataset, 8 * self.batch, self.seed * 1_000_003 + 999_983)
        i = np.minimum(i, self.max_seq_len - 1)
        life = np.maximum(1, np.minimum(o, self.max_seq_len - i))
        pick = rng.choice(len(i), size=self.batch, replace=True, p=life / life.sum())
        age = np.floor(rng.random(self.batch) * life[pick]).astype(np.int64)
        self.queue = [
            (int(i[k]), int(o[k]), int(a)) for k, a in zip(pick, age, strict=True)
        ] + self.queue
        self.refill(False)

    def _release(self, slots: np.ndarray) -> None:
        np.add.at(self.ch_free, self.ch[slots], self.tiles[slots])
        self.ch[slots] = -1
        self.tiles[slots] = 0

    def advance(self, measuring: bool) -> int:
        """Every active request produces one token; grow KV, finish, preempt."""
        act = np.flatnonzero(self.ch >= 0)
        self.gen[act] += 1
        done = act[(self.gen[act] >= self.out[act]) | (self.context()[act] >= self.max_seq_len)]
        if measuring:
            self.stats.finished += len(done)
        self._release(done)
        act = np.flatnonzero(self.ch >= 0)
        need = self.tiles_for(self.context()[act] + 1)
        grow = need - self.tiles[act]
        # Channels with room for all their growth are served at once; the others request
        # by request, preempting when full.
        per_ch = np.bincount(self.ch[act], weights=grow, minlength=self.nch)
        easy = per_ch <= self.ch_free
        sel = easy[self.ch[act]] & (grow > 0)
        self.tiles[act[sel]] += grow[sel]
        self.ch_free -= np.where(easy, per_ch, 0).astype(np.int64)
        grow = np.where(sel, 0, grow)
        for k in np.flatnonzero(grow > 0):
            s = act[k]
            if self.ch[s] < 0:  # preempted earlier in this loop
                continue
            c = self.ch[s]
            while self.ch_free[c] < grow[k]:
                on_c = np.flatnonzero(self.ch == c)
                victim = on_c[np.argmax(self.order[on_c])]
                self.queue.insert(
                    0, (int(self.inp[victim]), int(self.out[victim]), int(self.gen[victim]))
                )
                self._release(np.array([victim]))
                if measuring:
                    self.stats.preempted += 1
                if victim == s:
                    break
            if self.ch[s] >= 0:
                self.ch_free[c] -= grow[k]
                self.tiles[s] += grow[k]
        if (self.ch_free < 0).any():  # pragma: no cover - invariant
            raise AssertionError("KV capacity exceeded")
        return len(act)

    # -- the loop -------------------------------------------------------------------------
    def step(self, measuring: bool) -> None:
        self.refill(measuring)
        act = np.flatnonzero(self.ch >= 0)
        if measuring and act.size:
            r = self.system.step(self.context()[act], self.ch[act])
            st = self.stats
            t = r["wall_time_s"]
            st.iterations += 1
            st.tokens += int(act.size)
            st.time_s += t
            st.iter_latency_s.append(t)
            st.active.append(int(act.size))
            st.npu_util_time += r["npu_utilisation"] * t
            st.pim_util_time += r["pim_utilisation"] * t
            st.pim_busy_time += r["pim_busy_fraction"] * t
            st.bw_util_time += r["mem_bw_utilisation"] * t
            st.dram_energy_j += r["dram_energy_j"]
            st.npu_energy_j += r["npu_energy_j"]
            ratio = r["channel_load_max_over_mean"]
            st.load_ratio_sum += 0.0 if np.isnan(ratio) else ratio
            held = np.bincount(self.ch[act], weights=self.tiles[act], minlength=self.nch)
            used = float(held.max()) / self.capacity
            st.max_tiles_used_fraction = max(st.max_tiles_used_fraction, used)
        self.advance(measuring)


def serve(
    system: System,
    dataset: str,
    batch: int,
    *,
    seed: int = 0,
    warmup: int = 600,
    iterations: int = 100,
    max_seq_len: int = 2048,
    placement: str | None = None,
    kv_layers: str = "stage",
    steady_start: bool = True,
    stride: int = 1,
    kv_capacity: str = "enforce",
) -> dict:
    """Run ``warmup`` untimed then ``iterations`` timed iterations; return the metrics.
    ``steady_start`` begins from the stationary request mix (:meth:`Server.start_steady`).
    ``stride``: time one iteration in ``stride`` (the others advance untimed), so the timed
    sample spans ``iterations * stride`` iterations of the request mix's evolution; the
    metrics are those of the timed iterations (an unbiased sample, not a sum over all)."""
    if stride < 1:
        raise ConfigError(f"stride must be positive, got {stride}")
    srv = Server(system, dataset, batch, seed, max_seq_len, placement, kv_layers, kv_capacity)
    if steady_start:
        srv.start_steady()
    for _ in range(warmup):
        srv.step(False)
    for _ in range(iterations):
        srv.step(True)
        for _ in range(stride - 1):
            srv.step(False)
    return srv.stats.summary(system.devices)
