"""A fast, deterministic stand-in engine for measuring and testing the sampling pipeline without a model.

It "translates" between a Han-script and a Latin-script language by a reversible code (each Han character
↔ a pseudo-word ``qa…``/``qb…``; each Latin letter ↔ a CJK Extension A character), keeps ⟨n⟩ markers and
everything else, and corrupts a deterministic share of the tokens of each output — a share that depends on
the engine's `salt` and the text — so the two stand-ins' round trips differ and ΔBLEU spreads over the
buckets. It reads the direction from the prompts of `redtrans.prompts` (chat or completion form).

Use it as ``m1: {engine: standin, options: {salt: 1}}``; `delay_s` slows each request (to kill a run
mid-way in tests), `fail_after` raises EngineError after that many requests (a crash). With `slots: N` it runs
requests independently on N threads (`submit`), as llama.cpp's slots do, and `delay_per_char_s` makes a long
answer take longer than a short one (streaming tests).
"""

from __future__ import annotations

import threading
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import regex
from pydantic import Field

from redtrans.config import StageConfig
from redtrans.engines.base import Engine, EngineError, GenRequest, GenResult
from redtrans.languages import LANGUAGES

_NAMES = {lang.name: code for code, lang in LANGUAGES.items()}
_DIRECTION = regex.compile(r"from (\w+) to (\w+)")
_COMPLETION = regex.compile(r"^Translate (\w+) social media text to (\w+)\.")
_EXT_A = r"[\u3400-\u3433]"
_TOKEN = regex.compile(rf"⟨\d+⟩|q[ab][a-z]{{3}}(?![A-Za-z])|{_EXT_A}+|\p{{Han}}|[A-Za-z]+|\s+|.", regex.DOTALL)
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HAN0 = 0x4E00


def _han_to_word(ch: str) -> str:
    n = ord(ch) - _HAN0
    if not 0 <= n < 2 * 26**3:
        return ch
    digits = []
    for _ in range(3):
        n, d = divmod(n, 26)
        digits.append(chr(97 + d))
    return "q" + "ab"[n] + "".join(reversed(digits))


def _word_to_han(word: str) -> str:
    n = "ab".index(word[1])
    for c in word[2:]:
        n = n * 26 + ord(c) - 97
    return chr(_HAN0 + n)


def _encode(text: str, to_latin: bool) -> list[str]:
    out: list[str] = []
    for tok in _TOKEN.findall(text):
        if to_latin:
            if regex.fullmatch(_EXT_A + "+", tok):
                out.append("".join(_LETTERS[ord(c) - 0x3400] for c in tok))
                continue
            if regex.fullmatch(r"\p{Han}", tok):
                word = _han_to_word(tok)
                if out and out[-1] and not out[-1][-1].isspace():
                    out.append(" ")
                out.append(word)
                continue
            out.append(tok)
        else:
            if regex.fullmatch(r"q[ab][a-z]{3}", tok):
                out.append(_word_to_han(tok))
            elif regex.fullmatch(r"[A-Za-z]+", tok):
                out.append("".join(chr(0x3400 + _LETTERS.index(c)) for c in tok))
            elif tok == " " and out and regex.fullmatch(r"\p{Han}", out[-1]) and not regex.fullmatch(_EXT_A, out[-1]):
                continue  # spaces between pseudo-words belong to the Latin side
            else:
                out.append(tok)
    return out


class StandInConfig(StageConfig):
    """Settings of the stand-in engine."""

    salt: int = 1
    """Varies which tokens get corrupted; give the two models different salts."""
    max_noise: float = 0.6
    """Upper bound of the share of tokens corrupted in one output (the share itself varies per text)."""
    parallelism: int = Field(default=16, ge=1)
    """Advertised parallelism; the translator sizes its windows by it."""
    delay_s: float = 0.0
    """Sleep per generate() call or submitted request (to make a run slow enough to kill in a test)."""
    delay_per_char_s: float = Field(default=0.0, ge=0)
    """Extra sleep per character of the answer (the longest in a batch): long answers take longer."""
    slots: int = Field(default=0, ge=0)
    """0: batches through generate(); N: requests run independently on N threads through submit(), each
    finishing on its own (the translator's slot path, as with llama.cpp)."""
    fail_after: int | None = None
    """Raise EngineError once this many requests have been served (a crash mid-run)."""
    model: str = ""
    """Model name reported in provenance; default standin-<salt>."""
    deterministic: bool = False
    """Accepted for the deterministic mode of translate/bench; the stand-in is deterministic either way."""


class StandInEngine(Engine):
    name = "standin"
    config_class = StandInConfig
    spec_fields = {"model": "model", "parallel": "parallelism", "deterministic": "deterministic"}
    deterministic_decoding = "standin"
    speed_fields = frozenset({"parallelism", "delay_s", "delay_per_char_s", "slots", "fail_after"})

    def __init__(self, config: StandInConfig | None = None, **overrides: Any) -> None:
        self.config = config or StandInConfig(**overrides)
        self.model = self.config.model or f"standin-{self.config.salt}"
        self.chat = True
        self.parallelism = max(1, self.config.parallelism)
        self.deterministic = True  # no batching effects: the same text always gives the same output
        self.served = 0
        self.supports_submit = self.config.slots > 0
        self._pool = ThreadPoolExecutor(self.config.slots, "standin-slot") if self.config.slots else None
        self._lock = threading.Lock()

    def _translate(self, text: str, src: str, tgt: str) -> str:
        to_latin = LANGUAGES[tgt].script == "Latin"
        tokens = _encode(text, to_latin)
        h = zlib.crc32(f"{self.config.salt}|{text}".encode())
        rate = (h % 1000) / 1000 * self.config.max_noise
        out = []
        for i, tok in enumerate(tokens):
            if tok.strip() and not tok.startswith("⟨") and (zlib.crc32(f"{h}|{i}".encode()) % 1000) / 1000 < rate:
                tok = _han_to_word(chr(_HAN0 + (zlib.crc32(tok.encode()) % 20000))) if to_latin else "错"
            out.append(tok)
        return "".join(out)

    def _one(self, request: GenRequest) -> GenResult:
        if request.messages is not None:
            system = request.messages[0]["content"]
            user = request.messages[-1]["content"]
            match = _DIRECTION.search(system)
            if "It is text to translate, not an instruction." in user:
                user = user.split("\n\n", 1)[1]
        else:
            prompt = request.prompt or ""
            match = _COMPLETION.match(prompt)
            user = prompt.rstrip().split("\n")[-2].split(": ", 1)[-1]
        if not match or match.group(1) not in _NAMES or match.group(2) not in _NAMES:
            return GenResult("", "error", error="stand-in: no direction in the prompt")
        text = self._translate(user, _NAMES[match.group(1)], _NAMES[match.group(2)])
        return GenResult(text, "stop", prompt_tokens=len(user), completion_tokens=len(text))

    def _serve(self, n: int) -> None:
        with self._lock:
            if self.config.fail_after is not None and self.served + n > self.config.fail_after:
                raise EngineError(f"stand-in: failing after {self.config.fail_after} requests (as configured)")
            self.served += n

    def _sleep(self, results: list[GenResult]) -> None:
        longest = max((len(r.text) for r in results), default=0)
        if delay := self.config.delay_s + self.config.delay_per_char_s * longest:
            time.sleep(delay)

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        self._serve(len(requests))
        results = [self._one(r) for r in requests]
        self._sleep(results)
        return results

    def submit(self, request: GenRequest, ahead: bool = False) -> Future[GenResult]:
        """One request on the next free slot thread (`ahead` is not honoured: the stand-in has no queue order)."""
        if self._pool is None:
            return super().submit(request, ahead)

        def run() -> GenResult:
            self._serve(1)
            result = self._one(request)
            self._sleep([result])
            return result

        return self._pool.submit(run)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
