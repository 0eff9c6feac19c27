"""The wire format of the translation API: request and response models, nothing else.

Limits that depend on the configuration (batch size, text length) are checked by the service, so the
models carry only what is always true of a valid request.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


class TranslateItem(BaseModel):
    """One text to translate."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The post, comment or title, as written (emoji, hashtags, @mentions, URLs).")
    tgt: str | None = Field(None, description="Target language (ISO 639-1); default: the request's `tgt`.")
    src: str | None = Field(None, description="Source language; detected when omitted.")
    id: str | None = Field(None, max_length=200, description="Echoed back; default: the item's index.")


class TranslateRequest(BaseModel):
    """A batch of texts to translate."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {"text": "这家店的奶茶绝绝子🧋 #探店", "tgt": "en"},
                        {"text": "no cap this is the best pizza in town 🍕", "tgt": "zh", "src": "en"},
                    ]
                }
            ]
        },
    )

    items: list[TranslateItem] = Field(description="Texts to translate, answered in the same order.")
    tgt: str | None = Field(None, description="Default target language for items without their own `tgt`.")
    deadline_ms: int | None = Field(
        None, gt=0, description="Answer with 504 if not done within this many ms (capped by the server's deadline)."
    )


class Translation(BaseModel):
    id: str
    translation: str | None = Field(description="The translation; null when `status` is failed.")
    src: str = Field(description="The source language: as given, or detected.")
    tgt: str
    detected: bool = Field(description="Whether `src` was detected by the service.")
    flags: list[str] = Field(
        description="What the fidelity checks found (missing_span, wrong_language, echo, retried, …); empty = clean."
    )
    cached: bool = Field(description="Served from the translation cache.")
    status: Literal["ok", "failed"] = Field(
        "ok", description="failed: no usable translation (an empty answer, an echo, a refusal after the retry)."
    )
    error: str | None = Field(None, description="Why the item failed (`no_translation: …`); null when ok.")

    _tokens: tuple[int, int] | None = PrivateAttr(default=None)  # None: no deep copy of a default per answer

    @property
    def tokens(self) -> tuple[int, int]:
        """(prompt, completion) model tokens this answer cost, as the engine counted them; (0, 0) from the cache
        or where the engine does not count. Not on the wire: the OpenAI-shaped routes report it as `usage`."""
        return self._tokens or (0, 0)

    def costing(self, tokens: tuple[int, int]) -> Translation:
        """This answer, with the tokens it cost."""
        self._tokens = tokens
        return self

    @property
    def text(self) -> str:
        """The translation of an ok item (the compatible routes never receive failed ones: they answer 422)."""
        if self.translation is None:
            raise ValueError(f"item {self.id} has no translation: {self.error}")
        return self.translation


class TranslateResponse(BaseModel):
    translations: list[Translation]
    model: str
    prompt_version: str
    engine_ms: float = Field(description="Time the engine spent on the batch(es) this request rode in.")
    queue_ms: float = Field(description="Time the request waited for a free worker.")


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable: invalid_request, too_many_items, text_too_long, …")
    message: str = Field(description="What was wrong and how to fix it.")
    item: int | None = Field(None, description="Index of the offending item, when one is to blame.")


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str
    model: str | None = None
    engine: str | None = None
    detail: str | None = None
