"""Wire models of the client-compatible APIs: OpenAI chat completions, DeepL `/v2/translate` and
LibreTranslate `/translate`. Only the fields redtrans uses are declared; other fields these clients send
(`temperature`, `formality`, `glossary_id`, …) are accepted and ignored, as their servers' clients expect.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_LENIENT = ConfigDict(extra="ignore")


# -- OpenAI ----------------------------------------------------------------------------------------------------
class ContentPart(BaseModel):
    model_config = _LENIENT
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = _LENIENT
    role: str
    content: str | list[ContentPart] | None = None


class RedtransOptions(BaseModel):
    """Extra fields (`extra_body={"redtrans": {...}}` in the openai client); they override the model name."""

    model_config = ConfigDict(extra="forbid")
    src: str | None = Field(None, description="Source language; detected when omitted.")
    tgt: str | None = Field(None, description="Target language (zh-Hant etc. for a Chinese script).")
    deadline_ms: int | None = Field(None, gt=0, description="A shorter deadline than the server's.")


class StreamOptions(BaseModel):
    model_config = _LENIENT
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The last `user` message is the post to translate; other messages are ignored."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"model": "redtrans-zh-en", "messages": [{"role": "user", "content": "绝绝子🧋 #探店"}]}]
        },
    )
    model: str = Field(description="`redtrans` (detect → default target), `redtrans-SRC-TGT` or `redtrans-TGT`.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="Only 1.")
    redtrans: RedtransOptions | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str = "stop"
    logprobs: None = None


class Usage(BaseModel):
    """Counted in text units (a Han character, a word, a symbol), not model tokens; cached answers cost none."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RedtransInfo(BaseModel):
    src: str
    tgt: str
    detected: bool
    flags: list[str]
    cached: bool


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str
    redtrans: RedtransInfo


class Delta(BaseModel):
    role: str | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    system_fingerprint: str
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "redtrans"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorBody


# -- DeepL -----------------------------------------------------------------------------------------------------
class DeepLRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"text": ["绝绝子🧋 #探店"], "target_lang": "EN-US"}]},
    )
    text: list[str] = Field(min_length=1, description="Texts to translate (form bodies: `text` repeated).")
    target_lang: str = Field(description="DeepL code: EN, EN-US, EN-GB, ZH, ZH-HANS, ZH-HANT, DE, …")
    source_lang: str | None = Field(None, description="DeepL code (ZH, EN, …); detected when omitted.")
    show_billed_characters: bool = False


class DeepLTranslation(BaseModel):
    detected_source_language: str
    text: str
    billed_characters: int | None = None


class DeepLResponse(BaseModel):
    translations: list[DeepLTranslation]


class DeepLError(BaseModel):
    message: str


# -- LibreTranslate --------------------------------------------------------------------------------------------
class LibreRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"q": "绝绝子🧋 #探店", "source": "auto", "target": "en"}]},
    )
    q: str | list[str] = Field(description="A text or a list of texts.")
    source: str = Field("auto", description="Source language or `auto`.")
    target: str
    format: Literal["text", "html"] = "text"
    api_key: str | None = Field(None, description="The API key, when the server has keys.")
    alternatives: int = Field(0, ge=0)


class LibreDetected(BaseModel):
    confidence: float
    language: str


class LibreResponse(BaseModel):
    translatedText: str | list[str]  # noqa: N815 - LibreTranslate's field name
    detectedLanguage: LibreDetected | list[LibreDetected] | None = None  # noqa: N815
    alternatives: list[str] | list[list[str]] | None = None


class LibreError(BaseModel):
    error: str


class LibreLanguage(BaseModel):
    code: str
    name: str
    targets: list[str]


def error_responses(model: type[BaseModel], codes: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route whose errors have `model`'s shape."""
    return {code: {"model": model, "description": text} for code, text in codes.items()}
