"""Latent searches already run in this process, kept so that another encode of the same search reuses them.

A GAN inversion's Adam search is determined by its model, its targets and its search settings; the storage it is
written with (8, 6 or 4 bits of the same clip range) only judges its result. The poster's Table 1 runs one search
and stores it at several bit depths, and its 100-step row is the first 100 steps of its 1000-step row: the
evaluation grid computes each of those as its own unit. With this memo the second unit continues (or reuses) the
first one's search instead of repeating it, bit for bit what a fresh search gives, because the state kept is the
whole state of the search: the latents, Adam's moments and step count, and the best iterate so far.

States are kept by (key, steps) in a small LRU (``MAX_STATES``, ``MAX_BYTES``); a search asks for the longest
kept state of its key that has not run past its own step count, continues it, and keeps its own end state.
Nothing waits for another thread: two units of one search running at the same time both compute it, with the
same result.
"""

from __future__ import annotations

import collections
import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

# Each state is a few arrays of (tiles x latent size): about 0.3 MB for a 768x512 image and the shipped GAN, 15 MB
# for the largest image a learned codec takes. The oldest states go first past either bound.
MAX_STATES = 64
MAX_BYTES = 256 << 20


@dataclass
class SearchState:
    """Where a search stands after ``steps`` steps: its named tensors and its optimizer's state_dict."""

    steps: int
    tensors: dict[str, torch.Tensor]
    optimizer: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        tensors = [*self.tensors.values(), *_tensors_in(self.optimizer)]
        return sum(t.numel() * t.element_size() for t in tensors)

    def clone(self) -> SearchState:
        return SearchState(
            steps=self.steps,
            tensors={name: t.detach().clone() for name, t in self.tensors.items()},
            optimizer=copy.deepcopy(self.optimizer),
        )


def _tensors_in(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors_in(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors_in(v)]
    return []


class SearchMemo:
    """Search states by (key, steps), shared by the threads of a process."""

    def __init__(self, max_states: int = MAX_STATES, max_bytes: int = MAX_BYTES):
        self.max_states, self.max_bytes = max_states, max_bytes
        self._states: collections.OrderedDict[tuple[str, int], SearchState] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def run(
        self,
        key: str | None,
        steps: int,
        start: Callable[[], SearchState],
        advance: Callable[[SearchState, int], None],
    ) -> SearchState:
        """The state of search ``key`` after ``steps`` steps: a kept one, a kept shorter one advanced by
        ``advance(state, more_steps)`` (which must also set ``state.steps``), or ``start()`` advanced. ``key`` None:
        nothing is looked up or kept."""
        state = self._longest_kept(key, steps) if key is not None else None
        if state is None:
            state = start()
        if state.steps < steps:
            advance(state, steps - state.steps)
            if state.steps != steps:
                raise RuntimeError(f"search advanced to step {state.steps}, asked for {steps}")
            if key is not None:
                self._keep(key, state)
        return state

    def _longest_kept(self, key: str, steps: int) -> SearchState | None:
        with self._lock:
            kept = [k for k in self._states if k[0] == key and k[1] <= steps]
            if not kept:
                return None
            best = max(kept, key=lambda k: k[1])
            self._states.move_to_end(best)
            return self._states[best].clone()

    def _keep(self, key: str, state: SearchState) -> None:
        kept = state.clone()
        if kept.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._states.pop((key, state.steps), None)
            self._bytes += kept.nbytes - (old.nbytes if old is not None else 0)
            self._states[key, state.steps] = kept
            while len(self._states) > self.max_states or self._bytes > self.max_bytes:
                _, dropped = self._states.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._states.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)
