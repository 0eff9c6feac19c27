"""Training rows → TRL's conversational prompt-completion dataset, with the prompts the translator serves.

Whatever form a row arrives in, it becomes `Example`s whose prompt is what the translator sends at inference and
whose completion is the target as the assistant turn (the few-shot completion prompt of the translator's
`PromptBuilder.completion_prompt` for models without a chat template, as the ``hf`` engine prompts them).
Accepted rows (JSON Lines, one object a line):

- ``messages``: TRL conversational rows as ``redtrans sample`` writes them (one per translator segment; the last
  message is the assistant answer); optional ``id``, ``src``, ``tgt``. Taken as they are.
- ``prompt`` + ``completion``: TRL conversational prompt-completion rows (message lists; a string completion
  is taken as the assistant text). Taken as they are.
- ``source`` + ``target`` (+ ``src``, ``tgt``): plain parallel pairs, cut by the default translator's segment
  rule (`Translator.training_segments`, as ``redtrans sample`` cuts its SFT rows): one example per segment,
  ``id/sN`` when a post has several. A pair whose target does not fit the segments (another number of lines,
  a marker it lacks, nothing the translator would send) is refused, all such rows named in one error.

A bad row is a `JSONLError` naming the file and line; rows over the per-item limits (`redtrans.limits`: a
lone surrogate, too long, too many segments) are bad rows (training data is refused whole).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redtrans.errors import ConfigError, InputError
from redtrans.jsonl import JSONLError, read_jsonl
from redtrans.limits import check_messages, check_text

__all__ = ["Example", "load_sft_rows", "split_examples", "to_dataset"]


@dataclass
class Example:
    """One training pair in TRL conversational prompt-completion form, plus what evaluation needs."""

    id: str
    prompt: list[dict[str, str]] | str
    completion: list[dict[str, str]] | str
    reference: str
    src: str | None
    tgt: str | None

    @property
    def direction(self) -> str:
        """``src-tgt`` (``xx`` for a language that is not known), the label of per-direction scores."""
        return f"{self.src or 'xx'}-{self.tgt or 'xx'}"


def _detect(text: str) -> str | None:
    from redtrans.text.langid import detect_language

    return detect_language(text)


def _planner() -> Any:
    """The default translator without a model: its segments and prompts are what a trained model is served."""
    from redtrans.translator import Translator, TranslatorConfig

    return Translator.for_planning(TranslatorConfig())


def _segment_examples(
    planner: Any, rid: str, source: str, target: str, src: str, tgt: str, chat: bool
) -> list[Example]:
    """One example per segment the translator sends for `source`, the target cut to match (`TrainingPlan.align`;
    `AlignmentError` when it does not fit)."""
    from redtrans.translator import Item

    plan = planner.training_segments(Item(rid, source, tgt, src))
    parts = plan.align(target)
    many = len(plan.segments) > 1
    examples = []
    for segment, part in zip(plan.segments, parts, strict=True):
        sid = f"{rid}/s{segment.number}" if many else rid
        if chat:
            prompt: list[dict[str, str]] | str = segment.messages
            completion: list[dict[str, str]] | str = [{"role": "assistant", "content": part}]
        else:
            prompt = planner.prompts.completion_prompt(segment.masked, segment.src, segment.tgt)
            completion = " " + part + "\n"
        examples.append(Example(sid, prompt, completion, part, segment.src, segment.tgt))
    return examples


def _row_to_examples(
    row: dict[str, Any], where: tuple[Path, int], src: str | None, tgt: str | None, chat: bool, planner: Any
) -> list[Example]:
    path, line = where
    rid = str(row.get("id", f"{path.name}:{line}"))
    row_src, row_tgt = row.get("src") or src, row.get("tgt") or tgt
    prompt: list[dict[str, str]] | str
    completion: list[dict[str, str]] | str
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or len(messages) < 2 or not all(isinstance(m, dict) for m in messages):
            raise JSONLError(path, line, "`messages` must be a list of at least two {role, content} objects")
        if messages[-1].get("role") != "assistant":
            raise JSONLError(path, line, "the last message must be the assistant's answer (the translation)")
        if not chat:
            raise JSONLError(path, line, "`messages` rows need a model with a chat template")
        reference = str(messages[-1].get("content", ""))
        prompt, completion = [dict(m) for m in messages[:-1]], [dict(messages[-1])]
    elif "prompt" in row and "completion" in row:
        raw_prompt, raw_completion = row["prompt"], row["completion"]
        if isinstance(raw_completion, str):
            raw_completion = [{"role": "assistant", "content": raw_completion}]
        if not isinstance(raw_prompt, list) or not isinstance(raw_completion, list) or not raw_completion:
            raise JSONLError(
                path, line, "`prompt` must be a list of messages (conversational prompt-completion, as TRL defines)"
            )
        if not chat:
            raise JSONLError(path, line, "conversational `prompt`/`completion` rows need a model with a chat template")
        prompt, completion = raw_prompt, raw_completion
        reference = str(completion[-1].get("content", ""))
    elif "source" in row and "target" in row:
        source, reference = row["source"], row["target"]
        if not isinstance(source, str) or not isinstance(reference, str) or not source.strip() or not reference.strip():
            raise JSONLError(path, line, "`source` and `target` must be non-empty strings")
        # The per-item limits apply to the post (as serve and translate apply them), before it is segmented.
        problem = check_text(source, "source") or check_text(reference, "target")
        if problem is not None:
            raise JSONLError(path, line, problem.message)
        row_src = row_src or _detect(source)
        row_tgt = row_tgt or _detect(reference)
        if not row_src or not row_tgt:
            raise JSONLError(path, line, "cannot tell the language pair: give `src`/`tgt` fields or set src/tgt")
        return _segment_examples(planner, rid, source, reference, row_src, row_tgt, chat)
    else:
        raise JSONLError(
            path,
            line,
            "a row needs `messages`, `prompt`+`completion`, or `source`+`target` (got "
            f"{', '.join(sorted(row)) or 'no fields'})",
        )
    if not reference.strip():
        raise JSONLError(path, line, "empty translation (assistant answer)")
    # Training data is refused whole at a bad row (a set silently missing rows would change what is trained).
    if isinstance(prompt, list):
        problem = check_messages(prompt, "prompt")
    else:  # a few-shot completion prompt: valid text of any length
        problem = check_text(prompt, "prompt", max_chars=2**62, max_segments=2**62)
    problem = problem or (check_messages(completion, "completion") if isinstance(completion, list) else None)
    if problem is not None:
        raise JSONLError(path, line, problem.message)
    if row_tgt is None:
        row_tgt = _detect(reference)
    return [Example(rid, prompt, completion, reference, row_src, row_tgt)]


def load_sft_rows(path: str | Path, src: str | None = None, tgt: str | None = None, chat: bool = True) -> list[Example]:
    """Read a JSONL training file into examples (a plain pair gives one per translator segment); `JSONLError`
    names the file and line of a bad row, `InputError` every pair whose target does not fit its segments."""
    from redtrans.text.spans import AlignmentError

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"data file not found: {p}")
    planner = _planner()
    examples: list[Example] = []
    unaligned: list[str] = []
    for line, row in read_jsonl(p):
        try:
            examples += _row_to_examples(row, (p, line), src, tgt, chat, planner)
        except AlignmentError as exc:
            unaligned.append(f"line {line}: {exc}")
    if unaligned:
        shown = "; ".join(unaligned[:3]) + ("; …" if len(unaligned) > 3 else "")
        raise InputError(
            f"source/target pairs whose target does not fit the translator's segments (no model is served their "
            f"prompt): {len(unaligned)} ({shown}); give the target the source's lines and markup, or leave the row out",
            path=p,
        )
    if not examples:
        raise InputError("no rows", path=p)
    return examples


def split_examples(
    train_file: str | Path,
    eval_file: str | Path | None = None,
    *,
    eval_split: float = 0.0,
    seed: int = 42,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    src: str | None = None,
    tgt: str | None = None,
    chat: bool = True,
) -> tuple[list[Example], list[Example]]:
    """(train, eval) examples: `eval_file`, else `eval_split` rows of `train_file` (a fraction < 1 or a count
    >= 1, drawn with `seed`), then the sample limits."""
    train = load_sft_rows(train_file, src, tgt, chat)
    if eval_file:
        held = load_sft_rows(eval_file, src, tgt, chat)
    elif eval_split > 0:
        n_eval = int(eval_split) if eval_split >= 1 else math.ceil(len(train) * eval_split)
        n_eval = min(n_eval, len(train) - 1)
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        held_idx = set(order[:n_eval])
        held = [e for i, e in enumerate(train) if i in held_idx]
        train = [e for i, e in enumerate(train) if i not in held_idx]
    else:
        held = []
    if max_train_samples is not None:
        train = train[:max_train_samples]
    if max_eval_samples is not None:
        held = held[:max_eval_samples]
    return train, held


def to_dataset(examples: list[Example]) -> Any:
    """A `datasets.Dataset` of TRL conversational prompt-completion rows."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": e.prompt, "completion": e.completion} for e in examples])
