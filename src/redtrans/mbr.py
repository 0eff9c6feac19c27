"""Quality-aware decoding (issue 16, opt-in ``--candidates N``): N sampled candidates plus the greedy one,
and the one chosen by minimum Bayes risk.

MBR picks the candidate with the highest expected utility against the others used as pseudo-references:
``argmax_i mean_{j≠i} u(c_i, c_j)``, the consensus translation. The utility here is sentence chrF (sacrebleu);
anything with the `Utility` signature fits, and a reference-free quality-estimation model plugs in as a
`Chooser` (`choose(source, candidates) -> index`) where one exists. Its value grows with the model and the
utility: on a 1.5B model with chrF it is measured, not assumed (docs/quality.md).

`CandidateEngine` wraps any engine: each greedy request becomes the greedy one plus N sampled copies
(temperature > 0, seeds ``seed, seed+1, …`` recorded in `describe()`), and the caller gets back the chosen
answer, so the translator's checks and retries apply to it as to any answer. Requests that already sample, or
carry a grammar (a retry), pass through unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from functools import cache
from typing import Any, Protocol

from redtrans.engines.base import Engine, GenRequest, GenResult

Utility = Callable[[str, str], float]
"""u(hypothesis, pseudo_reference) → higher is better."""


class Chooser(Protocol):
    def choose(self, source: str, candidates: Sequence[str]) -> int:
        """The index of the candidate to keep."""
        ...


def chrf_utility(hypothesis: str, reference: str) -> float:
    """Sentence chrF (character 6-grams, β=2) of `hypothesis` against `reference`."""
    return float(_chrf().sentence_score(hypothesis, [reference]).score)


@cache
def _chrf() -> Any:
    from sacrebleu.metrics import CHRF

    return CHRF()


def mbr_scores(candidates: Sequence[str], utility: Utility = chrf_utility) -> list[float]:
    """Expected utility of each candidate against the others (identical texts are scored once)."""
    n = len(candidates)
    if n <= 1:
        return [0.0] * n
    cache: dict[tuple[str, str], float] = {}
    scores = []
    for i, hyp in enumerate(candidates):
        total = 0.0
        for j, ref in enumerate(candidates):
            if i == j:
                continue
            key = (hyp, ref)
            if key not in cache:
                cache[key] = 100.0 if hyp == ref else utility(hyp, ref)
            total += cache[key]
        scores.append(total / (n - 1))
    return scores


class MBRChooser:
    """Minimum Bayes risk with `utility` (chrF by default); ties go to the earliest (the greedy candidate)."""

    def __init__(self, utility: Utility = chrf_utility) -> None:
        self.utility = utility

    def choose(self, source: str, candidates: Sequence[str]) -> int:
        usable = [i for i, c in enumerate(candidates) if c.strip()]
        if len(usable) <= 1:
            return usable[0] if usable else 0
        scores = mbr_scores([candidates[i] for i in usable], self.utility)
        best = max(range(len(usable)), key=lambda k: (scores[k], -k))
        return usable[best]


def _source_of(request: GenRequest) -> str:
    if request.messages:
        return request.messages[-1]["content"]
    return request.prompt or ""


class CandidateEngine(Engine):
    """`inner` with each greedy request answered by the best of itself plus `n` sampled candidates."""

    name = "candidates"

    def __init__(
        self,
        inner: Engine,
        n: int,
        temperature: float = 0.7,
        seed: int = 0,
        chooser: Chooser | None = None,
    ) -> None:
        if n < 1:
            raise ValueError("candidates must be at least 1")
        if temperature <= 0:
            raise ValueError("candidate sampling needs a temperature above 0")
        self.inner, self.n, self.temperature, self.seed = inner, n, temperature, seed
        self.chooser: Chooser = chooser or MBRChooser()
        self.model = inner.model
        self.chat = inner.chat
        self.parallelism = inner.parallelism
        self.supports_grammar = inner.supports_grammar
        self.supports_submit = inner.supports_submit
        self.deterministic = inner.deterministic
        self.chosen_sampled = 0  # how often a sampled candidate beat the greedy one
        self.decisions = 0
        self._lock = threading.Lock()

    @property
    def seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.n)]

    def _expand(self, request: GenRequest) -> list[GenRequest]:
        if request.temperature > 0 or request.grammar:
            return [request]
        sampled = [dataclasses.replace(request, temperature=self.temperature, seed=s) for s in self.seeds]
        return [request, *sampled]

    def _pick(self, request: GenRequest, results: list[GenResult]) -> GenResult:
        if len(results) == 1:
            return results[0]
        ok = [r for r in results if r.finish_reason != "error"]
        if not ok:
            return results[0]
        index = self.chooser.choose(_source_of(request), [r.text for r in ok])
        chosen = ok[index]
        with self._lock:
            self.decisions += 1
            self.chosen_sampled += chosen is not results[0]
        return dataclasses.replace(
            chosen,
            prompt_tokens=sum(r.prompt_tokens for r in results),
            completion_tokens=sum(r.completion_tokens for r in results),
            cached_tokens=sum(r.cached_tokens for r in results),
        )

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        groups = [self._expand(r) for r in requests]
        flat = [g for group in groups for g in group]
        results = self.inner.generate(flat)
        out, pos = [], 0
        for request, group in zip(requests, groups, strict=True):
            out.append(self._pick(request, results[pos : pos + len(group)]))
            pos += len(group)
        return out

    def submit(self, request: GenRequest, ahead: bool = False) -> Future[GenResult]:
        group = self._expand(request)
        done: Future[GenResult] = Future()
        results: list[GenResult | None] = [None] * len(group)
        left = [len(group)]
        lock = threading.Lock()

        def finished(index: int, future: Future[GenResult]) -> None:
            try:
                results[index] = future.result()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's future
                if not done.done():
                    done.set_exception(exc)
                return
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last and not done.done():
                try:
                    done.set_result(self._pick(request, [r for r in results if r is not None]))
                except BaseException as exc:  # noqa: BLE001
                    done.set_exception(exc)

        for index, req in enumerate(group):
            self.inner.submit(req, ahead=ahead).add_done_callback(functools.partial(finished, index))
        return done

    def describe(self) -> dict[str, Any]:
        return {
            **self.inner.describe(),
            "candidates": {"n": self.n, "temperature": self.temperature, "seeds": self.seeds,
                           "chooser": type(self.chooser).__name__, "utility": "chrF"},
        }  # fmt: skip

    def close(self) -> None:
        self.inner.close()
