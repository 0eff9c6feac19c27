"""Deterministic engine stand-ins for faults a real model cannot be made to produce on demand."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import regex

from redtrans.engines.base import Engine, GenRequest, GenResult


class PseudoTranslator(Engine):
    """'Translates' zh→en by replacing each Han character with 'w' and en→zh by replacing each Latin word
    with '字', keeping markers — or dropping them when `drop_markers` is set, to exercise re-insertion."""

    name = "pseudo"
    model = "pseudo"

    def __init__(self, drop_markers: bool = False, preamble: str = "") -> None:
        self.drop_markers = drop_markers
        self.preamble = preamble
        self.requests: list[GenRequest] = []

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        self.requests.extend(requests)
        results = []
        for request in requests:
            assert request.messages is not None
            text = request.messages[-1]["content"]
            system = request.messages[0]["content"]
            if "Translate this" in text:  # strict retry framing: the post is after the blank line
                text = text.split("\n\n", 1)[1]
            to_english = "to English" in system
            out = regex.sub(r"\p{Han}", "w", text) if to_english else regex.sub(r"[A-Za-z]+", "字", text)
            if self.drop_markers:
                out = regex.sub(r"⟨\d+⟩", "", out)
            results.append(GenResult(self.preamble + out))
        return results


class SlotPseudoTranslator(PseudoTranslator):
    """The same, submitting requests one by one to a pool, as the llama.cpp engine does with its slots."""

    supports_submit = True
    parallelism = 3

    def __init__(self, drop_markers: bool = False, preamble: str = "") -> None:
        super().__init__(drop_markers, preamble)
        self._pool = ThreadPoolExecutor(self.parallelism)

    def submit(self, request: GenRequest, ahead: bool = False) -> Future[GenResult]:
        return self._pool.submit(lambda: self.generate([request])[0])


class LeakyTranslator(PseudoTranslator):
    """Leaves source text in its first answer, as small models do ("The奶茶 here…" into English, English
    echoed into Chinese); a grammar-constrained request or the strict retry prompt gets a clean answer."""

    supports_grammar = True

    def __init__(self, empty_under_grammar: bool = False) -> None:
        super().__init__()
        self.empty_under_grammar = empty_under_grammar

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        results = super().generate(requests)
        for request, result in zip(requests, results, strict=True):
            text = request.messages[-1]["content"]
            if request.grammar is not None and self.empty_under_grammar:
                result.text = ""
            elif request.grammar is None and "Translate this" not in text:
                # Into English the first two Han characters stay; into Chinese the English comes back as is.
                han = regex.findall(r"\p{Han}", text)
                result.text = "".join(han[:2]) + result.text[2:] if han else text
        return results
