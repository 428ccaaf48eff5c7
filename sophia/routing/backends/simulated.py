"""The built-in simulated backend: behaves like an OpenAI-compatible server, offline.

Latency is time to first token plus a per-token time; usage is counted like a real server
reports it; faults (errors, slow replies, cut streams) happen at configured rates. Under a
seed, the same sequence of calls gives the same replies and faults.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from sophia.config import Endpoint, Simulation
from sophia.routing.backends.base import BackendError, Chunk, Usage
from sophia.routing.features import estimate_tokens, prompt_text

_WORDS = (
    "the router weighs each request by its length, its keywords and the tokens it may need; "
    "short questions go to the serverless tier at a fraction of a cent, while long analyses "
    "run on dedicated GPUs that are paid for by the hour whether they are busy or idle. "
    "this reply comes from a simulated endpoint so that every part of the product can be "
    "tried without a network, a key or a bill"
).split()


def latency_ms(sim: Simulation, completion_tokens, slow=False):
    """The simulated latency model, shared with demo traffic: TTFT + tokens x per-token time."""
    if isinstance(slow, np.ndarray):
        factor = np.where(slow, sim.slow_factor, 1.0)
    else:
        factor = sim.slow_factor if slow else 1.0
    return (sim.ttft_ms + np.multiply(completion_tokens, sim.tpot_ms)) * factor


class SimulatedBackend:
    simulated = True

    def __init__(self, endpoint: Endpoint, sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = endpoint.name
        self.sim = endpoint.simulation
        self._sleep = sleep
        self._rng = random.Random(self.sim.seed)
        self._lock = threading.Lock()

    def _plan(self, model: str, messages, max_tokens: int) -> tuple[list[str], int, bool, bool, bool]:
        with self._lock:
            r = self._rng
            fail = r.random() < self.sim.error_rate
            slow = r.random() < self.sim.slow_rate
            cut = r.random() < self.sim.cut_rate
            n = max(1, min(max_tokens, int(self.sim.reply_tokens * (0.5 + r.random()))))
            start = r.randrange(len(_WORDS))
        words = [f"[simulated {model}]"] + [_WORDS[(start + i) % len(_WORDS)] for i in range(n - 1)]
        return words, estimate_tokens(len(prompt_text(messages))), fail, slow, cut

    def complete(self, model, messages, max_tokens):
        words, prompt_tokens, fail, slow, _ = self._plan(model, messages, max_tokens)
        if fail:
            self._sleep(self.sim.ttft_ms / 1000)
            raise BackendError("http_status", f"{self.name} answered HTTP 503: simulated failure", status=503)
        self._sleep(float(latency_ms(self.sim, len(words), slow)) / 1000)
        return " ".join(words), Usage(prompt_tokens, len(words))

    def stream(self, model, messages, max_tokens) -> Iterator[Chunk]:
        words, prompt_tokens, fail, slow, cut = self._plan(model, messages, max_tokens)
        factor = self.sim.slow_factor if slow else 1.0
        self._sleep(self.sim.ttft_ms * factor / 1000)
        if fail:
            raise BackendError("http_status", f"{self.name} answered HTTP 503: simulated failure", status=503)
        stop = len(words) // 2 if cut else len(words)
        step = 4  # a few tokens per event, like real servers under load
        for i in range(0, stop, step):
            part = words[i : min(i + step, stop)]
            if i:
                self._sleep(self.sim.tpot_ms * factor * len(part) / 1000)
            yield Chunk((" " if i else "") + " ".join(part))
        if cut:
            raise BackendError("cut_stream", f"{self.name} dropped the connection mid-stream (simulated)")
        yield Chunk("", Usage(prompt_tokens, len(words)) if self.sim.report_usage else None)

    def check(self) -> bool:
        return self.sim.error_rate < 1.0

    def close(self) -> None:
        pass
