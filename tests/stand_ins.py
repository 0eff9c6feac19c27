"""Deterministic engine stand-ins for faults a real model cannot be made to produce on demand."""

from __future__ import annotations

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
