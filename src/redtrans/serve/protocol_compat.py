"""Wire models of the client-compatible APIs: OpenAI chat completions, completions and responses, DeepL
`/v2/*` and LibreTranslate `/translate`, `/detect`, `/languages`. Options that do not change what an answer
means (`temperature`, `formality`, …) are accepted and ignored, as these servers' clients expect; fields that
would (`tools`, `response_format`, `glossary_id`, …) are declared so a request naming them is refused (400).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from redtrans.serve.errors import ServiceError

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


_TEXT_PARTS = frozenset({"text", "input_text"})


def _joined(content: str | list[ContentPart] | None, field: str) -> str:
    """A message's text: a string, or its text parts joined; other parts (images, audio, files) → 400."""
    if not isinstance(content, list):
        return content or ""
    for part in content:
        if part.type not in _TEXT_PARTS:
            raise ServiceError(
                400, "unsupported_field", f"`{part.type}` content is not supported: send text to translate", param=field
            )
    return "".join(p.text or "" for p in content)


def _no_text(field: str) -> ServiceError:
    return ServiceError(422, "invalid_request", "the last user message has no text to translate", param=field)


class _OpenAIRequest(BaseModel):
    """Fields every OpenAI-shaped request shares; `unsupported` names those that would change the answer."""

    model_config = ConfigDict(extra="ignore")
    stream: bool = False
    stream_options: StreamOptions | None = None
    redtrans: RedtransOptions | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def unsupported(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if self.tools:
            found.append(("tools", "it translates; it calls no tools"))
        if self.tool_choice not in (None, "none", "auto"):
            found.append(("tool_choice", "it translates; it calls no tools"))
        return found


class ChatCompletionRequest(_OpenAIRequest):
    """The last `user` message is the post to translate; other messages are ignored."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"model": "redtrans-zh-en", "messages": [{"role": "user", "content": "绝绝子🧋 #探店"}]}]
        },
    )
    model: str = Field(description="`redtrans` (detect → default target), `redtrans-SRC-TGT` or `redtrans-TGT`.")
    messages: list[ChatMessage] = Field(min_length=1)
    n: int = Field(1, ge=1, description="Only 1.")
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    audio: dict[str, Any] | None = None
    modalities: list[str] | None = None
    web_search_options: dict[str, Any] | None = None

    def unsupported(self) -> list[tuple[str, str]]:
        found = super().unsupported()
        if self.n > 1:
            found.append(("n", "one translation per request: n must be 1"))
        if self.response_format and self.response_format.get("type", "text") != "text":
            found.append(("response_format", "the answer is the translation, as text"))
        if self.logprobs or self.top_logprobs:
            found.append(("logprobs" if self.logprobs else "top_logprobs", "the pipeline reports no log probabilities"))
        if self.functions or self.function_call not in (None, "none", "auto"):
            found.append(("functions" if self.functions else "function_call", "it translates; it calls no tools"))
        if self.audio is not None or (self.modalities and set(self.modalities) != {"text"}):
            found.append(("audio" if self.audio is not None else "modalities", "the answer is text"))
        if self.web_search_options is not None:
            found.append(("web_search_options", "it translates the post alone"))
        return found

    def post(self) -> str:
        for message in reversed(self.messages):
            if message.role != "user":
                continue
            content = _joined(message.content, "messages")
            if content and content.strip():
                return content
            break
        raise _no_text("messages")


class CompletionRequest(_OpenAIRequest):
    """The `prompt` is the post to translate (a list of prompts: one choice each, in order)."""

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"model": "redtrans-zh-en", "prompt": "绝绝子🧋 #探店"}]}
    )
    model: str = Field(description="`redtrans` (detect → default target), `redtrans-SRC-TGT` or `redtrans-TGT`.")
    prompt: str | list[str] | list[int] | list[list[int]] = Field(description="The post, or a list of posts.")
    n: int = Field(1, ge=1, description="Only 1.")
    best_of: int | None = None
    echo: bool = False
    suffix: str | None = None
    logprobs: int | None = None

    def unsupported(self) -> list[tuple[str, str]]:
        found = super().unsupported()
        if self.n > 1 or (self.best_of or 1) > 1:
            found.append(("n" if self.n > 1 else "best_of", "one translation per prompt"))
        if self.echo:
            found.append(("echo", "the answer is the translation alone"))
        if self.suffix:
            found.append(("suffix", "a translation has no insertion point"))
        if self.logprobs:
            found.append(("logprobs", "the pipeline reports no log probabilities"))
        return found

    def prompts(self) -> list[str]:
        prompt = self.prompt
        texts = [prompt] if isinstance(prompt, str) else prompt
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ServiceError(
                400, "unsupported_field", "`prompt` must be text (a string or a list of strings)", param="prompt"
            )
        return [str(t) for t in texts]


class ResponseInput(BaseModel):
    model_config = _LENIENT
    type: str = "message"
    role: str | None = None
    content: str | list[ContentPart] | None = None


class ResponsesRequest(_OpenAIRequest):
    """The last user input is the post to translate; `instructions` and other inputs are ignored."""

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"model": "redtrans-zh-en", "input": "绝绝子🧋 #探店"}]}
    )
    model: str | None = Field(None, description="As in chat completions; default `redtrans`.")
    input: str | list[ResponseInput] = Field(description="The post, or input items (the last user one is translated).")
    text: dict[str, Any] | None = None
    previous_response_id: str | None = None
    conversation: Any = None
    background: bool | None = None
    prompt: dict[str, Any] | None = None

    def unsupported(self) -> list[tuple[str, str]]:
        found = super().unsupported()
        fmt = (self.text or {}).get("format") or {}
        if isinstance(fmt, dict) and fmt.get("type", "text") != "text":
            found.append(("text.format", "the answer is the translation, as text"))
        if self.previous_response_id or self.conversation:
            found.append(
                ("previous_response_id" if self.previous_response_id else "conversation", "no responses are stored")
            )
        if self.background:
            found.append(("background", "responses are answered at once; none are stored"))
        if self.prompt:
            found.append(("prompt", "no prompt templates are stored"))
        return found

    def post(self) -> str:
        if isinstance(self.input, str):
            if self.input.strip():
                return self.input
            raise _no_text("input")
        for item in reversed(self.input):
            if item.type != "message" or item.role != "user":
                continue
            content = _joined(item.content, "input")
            if content.strip():
                return content
            break
        raise _no_text("input")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str = "stop"
    logprobs: None = None


class Usage(BaseModel):
    """The model's tokens where the engine counts them, else text units (a Han character, a word, a symbol);
    cached answers cost none."""

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


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str | None = "stop"
    logprobs: None = None


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    system_fingerprint: str
    usage: Usage | None = None


def response_object(
    ident: str, message_id: str, created: int, model: str, text: str | None, status: str, prompt: int, completion: int
) -> dict[str, Any]:
    """An OpenAI `response` object whose output is one assistant message with `text` (none while in progress)."""
    output = []
    if text is not None:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        output.append({"type": "message", "id": message_id, "status": "completed", "role": "assistant",
                       "content": [part]})  # fmt: skip
    return {
        "id": ident,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": False,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 0.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "none",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        },
        "metadata": {},
    }


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
DEEPL_REFUSED = ("glossary_id", "glossary_ids", "style_id", "translation_memory_id", "custom_instructions")
"""DeepL request fields that would change the translation and that redtrans cannot honour: 400 naming the field,
never silently ignored. Other options (`formality`, `context`, `split_sentences`, …) are accepted and ignored."""


def _listed(value: Any) -> Any:
    """A list field sent as one string: a text as a list of one; tags as DeepL's comma-separated list."""
    return [value] if isinstance(value, str) else value


class DeepLRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"text": ["绝绝子🧋 #探店"], "target_lang": "EN-US"}]},
    )
    text: list[str] = Field(min_length=1, description="Texts to translate (form bodies: `text` repeated).")
    target_lang: str = Field(description="DeepL code: EN, EN-US, EN-GB, ZH, ZH-HANS, ZH-HANT, DE, …")
    source_lang: str | None = Field(None, description="DeepL code (ZH, EN, …); detected when omitted.")
    show_billed_characters: bool = False
    tag_handling: Literal["html", "xml"] | None = Field(
        None, description="Texts are HTML or XML: tags are kept in place, the text between them translated."
    )
    ignore_tags: list[str] = Field(
        default_factory=list, description="Elements whose content is kept as is (a list, or comma-separated)."
    )

    @field_validator("text", mode="before")
    @classmethod
    def _one_text(cls, value: Any) -> Any:
        return _listed(value)

    @field_validator("ignore_tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        values = _listed(value) or []
        if not isinstance(values, list):
            return values
        return [t.strip() for v in values if isinstance(v, str) for t in v.split(",") if t.strip()]


class DeepLTranslation(BaseModel):
    detected_source_language: str
    text: str
    billed_characters: int | None = None


class DeepLResponse(BaseModel):
    translations: list[DeepLTranslation]


class DeepLLanguage(BaseModel):
    language: str
    name: str
    supports_formality: bool | None = None


class DeepLUsage(BaseModel):
    """Characters this key had translated by this process; no limit (redtrans has no quota)."""

    character_count: int


class DeepLError(BaseModel):
    message: str


# -- LibreTranslate --------------------------------------------------------------------------------------------
class LibreRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"q": "绝绝子🧋 #探店", "source": "auto", "target": "en"}]},
    )
    q: str | list[str] = Field(description="A text or a list of texts.")
    source: str = Field("auto", description="Source language, `auto`, or `zt` (Traditional Chinese).")
    target: str = Field(description="Target language; `zt` is Traditional Chinese.")
    format: Literal["text", "html"] = Field("text", description="`html`: tags are kept, the text translated.")
    api_key: str | None = Field(None, description="The API key, when the server has keys.")
    alternatives: int = Field(0, ge=0)


class LibreDetectRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{"q": "绝绝子🧋 #探店"}]})
    q: str = Field(description="The text whose language is detected.")
    api_key: str | None = Field(None, description="The API key, when the server has keys.")


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
