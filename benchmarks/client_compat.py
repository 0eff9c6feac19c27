"""Every public method of the official client SDKs against `redtrans serve` (issue 33): not a timing claim.

The call list is built by introspection, so a method a new SDK version adds is counted (and fails until it is
given a call here): the `openai` client's `chat.completions`, `completions`, `responses` and `models`
resources, every public method of `deepl.DeepLClient` (which holds every `deepl.Translator` method), and every
public method of `libretranslatepy.LibreTranslateAPI`. Each runs against `redtrans serve` on the stand-in
engine (a process on a free loopback port, API keys on), and counts as ok when it gets what docs/serve.md
says it gets:

| expectation | ok when |
|---|---|
| result | the SDK returns, and the value is the translation / list / count the server was asked for |
| refused | the SDK raises its own exception for the documented status (a 404 "not supported", a 400 naming the
  field, a 405 naming the routes served), with redtrans's message — parsed by the SDK, never a crash |

A method excluded from the count is printed with its reason (it sends no request, or speaks no HTTP).
M = every introspected method not excluded; the last line is `sdk_calls_ok: N/M target: M/M`, and the exit
status is 1 below the target.

    python benchmarks/client_compat.py
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
KEY = "client-compat-key"


@dataclass
class Refused:
    """The SDK raises `errors` for `status`, and the message holds `says`."""

    errors: tuple[type[BaseException], ...]
    status: int
    says: str


@dataclass
class Call:
    run: Callable[[], Any]
    check: Callable[[Any], bool] | Refused


EXCLUDED = {
    "openai.responses.connect": "opens a Responses WebSocket session; redtrans serves HTTP only",
    "deepl.DeepLClient.close": "closes the client's own HTTP session; sends no request",
    "deepl.DeepLClient.set_app_info": "sets a client-side header; sends no request",
    "deepl.DeepLClient.download_translation_memory_export": "calls the signed download URL of a finished export job "
    "(no API key sent); redtrans creates no jobs (create_translation_memory_export is refused), so there is none",
    "deepl.DeepLClient.upload_translation_memory_file": "calls the signed upload URL of an import job (no API key "
    "sent); redtrans creates no jobs (create_translation_memory_import is refused), so there is none",
}


def introspect() -> list[str]:
    import deepl
    import libretranslatepy
    import openai

    client = openai.OpenAI(api_key="x", base_url="http://127.0.0.1:1/v1")
    names: list[str] = []
    for resource in ("chat.completions", "completions", "responses", "models"):
        obj: Any = client
        for part in resource.split("."):
            obj = getattr(obj, part)
        for name, _ in inspect.getmembers(type(obj), inspect.isfunction):
            if not name.startswith("_"):
                names.append(f"openai.{resource}.{name}")
    for name, _ in inspect.getmembers(deepl.DeepLClient, inspect.isfunction):
        if not name.startswith("_"):
            names.append(f"deepl.DeepLClient.{name}")
    for name, _ in inspect.getmembers(libretranslatepy.LibreTranslateAPI, inspect.isfunction):
        if not name.startswith("_"):
            names.append(f"libretranslatepy.LibreTranslateAPI.{name}")
    return names


def calls(base: str, scratch: Path) -> dict[str, Call]:
    import deepl
    import libretranslatepy
    import openai
    import pydantic

    from redtrans.engines.standin import StandInEngine
    from redtrans.translator import Translator, TranslatorConfig

    translator = Translator(StandInEngine(), TranslatorConfig())

    def expected(text: str, tgt: str = "en") -> str:
        return "\n".join(translator.translate_text(line, tgt).translation if line else "" for line in text.split("\n"))

    post = "晚安\n世界"
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)
    chat = {"model": "redtrans-zh-en", "messages": [{"role": "user", "content": post}]}
    not_kept = Refused((openai.NotFoundError,), 404, "POST /v1/responses")
    not_allowed = Refused((openai.APIStatusError,), 405, "POST /v1/chat/completions")

    class Shape(pydantic.BaseModel):
        text: str

    def chat_stream() -> str:
        with client.chat.completions.stream(**chat) as stream:  # type: ignore[arg-type]
            for _ in stream:
                pass
            return str(stream.get_final_completion().choices[0].message.content)

    def responses_stream() -> str:
        with client.responses.stream(model="redtrans-zh-en", input=post) as stream:
            for _ in stream:
                pass
            return stream.get_final_response().output_text

    out: dict[str, Call] = {
        "openai.chat.completions.create": Call(
            lambda: client.chat.completions.create(**chat).choices[0].message.content,  # type: ignore[arg-type]
            lambda r: r == expected(post),
        ),
        "openai.chat.completions.stream": Call(chat_stream, lambda r: r == expected(post)),
        "openai.chat.completions.parse": Call(
            lambda: client.chat.completions.parse(**chat, response_format=Shape),  # type: ignore[arg-type]
            Refused((openai.BadRequestError,), 400, "`response_format` is not supported"),
        ),
        "openai.chat.completions.retrieve": Call(lambda: client.chat.completions.retrieve("chatcmpl-1"), not_kept),
        "openai.chat.completions.update": Call(
            lambda: client.chat.completions.update("chatcmpl-1", metadata={"a": "b"}), not_kept
        ),
        "openai.chat.completions.delete": Call(lambda: client.chat.completions.delete("chatcmpl-1"), not_kept),
        "openai.chat.completions.list": Call(lambda: client.chat.completions.list(), not_allowed),
        "openai.completions.create": Call(
            lambda: [
                c.text for c in client.completions.create(model="redtrans-zh-en", prompt=["晚安", "世界"]).choices
            ],
            lambda r: r == [expected("晚安"), expected("世界")],
        ),
        "openai.responses.create": Call(
            lambda: client.responses.create(model="redtrans-zh-en", input=post).output_text,
            lambda r: r == expected(post),
        ),
        "openai.responses.stream": Call(responses_stream, lambda r: r == expected(post)),
        "openai.responses.parse": Call(
            lambda: client.responses.parse(model="redtrans-zh-en", input=post, text_format=Shape),
            Refused((openai.BadRequestError,), 400, "`text.format` is not supported"),
        ),
        "openai.responses.retrieve": Call(lambda: client.responses.retrieve("resp_1"), not_kept),
        "openai.responses.delete": Call(lambda: client.responses.delete("resp_1"), not_kept),
        "openai.responses.cancel": Call(lambda: client.responses.cancel("resp_1"), not_kept),
        "openai.responses.compact": Call(lambda: client.responses.compact(model="redtrans", input=post), not_kept),
        "openai.models.list": Call(lambda: [m.id for m in client.models.list()], lambda r: "redtrans-zh-en" in r),
        "openai.models.retrieve": Call(
            lambda: client.models.retrieve("redtrans-zh-en").id, lambda r: r == "redtrans-zh-en"
        ),
        "openai.models.delete": Call(
            lambda: client.models.delete("redtrans-zh-en"), Refused((openai.APIStatusError,), 405, "GET /v1/models")
        ),
    }

    d = deepl.DeepLClient(KEY, server_url=base)
    nope = Refused((deepl.DeepLException,), 404, "not supported")
    glossary = deepl.GlossaryInfo("g-1", "slang", True, "ZH", "EN", datetime.datetime.now(), 1)
    entries = deepl.api_data.MultilingualGlossaryDictionaryEntries("ZH", "EN", {"绝绝子": "amazing"})
    handle = deepl.DocumentHandle("doc-1", "key-1")
    # A streamed download's body is not read by the SDK on an error: its 404 carries no message to check.
    nope_streamed = Refused((deepl.DeepLException,), 404, "")
    document = scratch / "post.txt"
    document.write_text("晚安", encoding="utf-8")
    usage_before: list[int] = []

    def usage() -> int:
        return int(d.get_usage().character.count or 0)

    def translate_then_usage() -> int:
        usage_before.append(usage())
        d.translate_text("晚安", target_lang="EN-US")
        return usage()

    deepl_calls: dict[str, Call] = {
        "translate_text": Call(
            lambda: [
                r.text
                for r in d.translate_text(
                    ["晚安", "<b>晚安</b><code>别翻</code>"],
                    target_lang="EN-US",
                    tag_handling="html",
                    ignore_tags=["code"],
                )
            ],  # fmt: skip
            lambda r: r == [expected("晚安"), f"<b>{expected('晚安')}</b><code>别翻</code>"],
        ),
        "get_usage": Call(translate_then_usage, lambda r: r == usage_before[-1] + 2),
        "get_source_languages": Call(lambda: [x.code for x in d.get_source_languages()], lambda r: "ZH" in r),
        "get_target_languages": Call(lambda: [x.code for x in d.get_target_languages()], lambda r: "ZH-HANT" in r),
        "translate_text_with_glossary": Call(
            lambda: d.translate_text_with_glossary("晚安", glossary, target_lang="EN-US"),
            Refused((deepl.DeepLException,), 400, "`glossary_id` is not supported"),
        ),
        "correct_text": Call(lambda: d.correct_text("good nigth"), nope),
        "rephrase_text": Call(lambda: d.rephrase_text("good night"), nope),
        "create_glossary": Call(lambda: d.create_glossary("slang", "ZH", "EN", {"绝绝子": "amazing"}), nope),
        "create_glossary_from_csv": Call(
            lambda: d.create_glossary_from_csv("slang", "ZH", "EN", "绝绝子,amazing"), nope
        ),
        "create_multilingual_glossary": Call(lambda: d.create_multilingual_glossary("slang", [entries]), nope),
        "create_multilingual_glossary_from_csv": Call(
            lambda: d.create_multilingual_glossary_from_csv("slang", "ZH", "EN", "绝绝子,amazing"), nope
        ),
        "delete_glossary": Call(lambda: d.delete_glossary("g-1"), nope),
        "delete_multilingual_glossary": Call(lambda: d.delete_multilingual_glossary("g-1"), nope),
        "delete_multilingual_glossary_dictionary": Call(
            lambda: d.delete_multilingual_glossary_dictionary("g-1", source_lang="ZH", target_lang="EN"), nope
        ),
        "get_glossary": Call(lambda: d.get_glossary("g-1"), nope),
        "get_glossary_entries": Call(lambda: d.get_glossary_entries("g-1"), nope),
        "get_glossary_languages": Call(lambda: d.get_glossary_languages(), nope),
        "get_multilingual_glossary": Call(lambda: d.get_multilingual_glossary("g-1"), nope),
        "get_multilingual_glossary_entries": Call(lambda: d.get_multilingual_glossary_entries("g-1", "ZH", "EN"), nope),
        "list_glossaries": Call(lambda: d.list_glossaries(), nope),
        "list_multilingual_glossaries": Call(lambda: d.list_multilingual_glossaries(), nope),
        "replace_multilingual_glossary_dictionary": Call(
            lambda: d.replace_multilingual_glossary_dictionary("g-1", entries), nope
        ),
        "replace_multilingual_glossary_dictionary_from_csv": Call(
            lambda: d.replace_multilingual_glossary_dictionary_from_csv("g-1", "ZH", "EN", "绝绝子,amazing"), nope
        ),
        "update_multilingual_glossary_dictionary": Call(
            lambda: d.update_multilingual_glossary_dictionary("g-1", entries), nope
        ),
        "update_multilingual_glossary_dictionary_from_csv": Call(
            lambda: d.update_multilingual_glossary_dictionary_from_csv("g-1", "ZH", "EN", "绝绝子,amazing"), nope
        ),
        "update_multilingual_glossary_name": Call(lambda: d.update_multilingual_glossary_name("g-1", "x"), nope),
        "create_style_rule": Call(lambda: d.create_style_rule("casual", "en"), nope),
        "create_style_rule_custom_instruction": Call(
            lambda: d.create_style_rule_custom_instruction("s-1", "tone", "be casual"), nope
        ),
        "delete_style_rule": Call(lambda: d.delete_style_rule("s-1"), nope),
        "delete_style_rule_custom_instruction": Call(
            lambda: d.delete_style_rule_custom_instruction("s-1", "i-1"), nope
        ),
        "get_all_style_rules": Call(lambda: d.get_all_style_rules(), nope),
        "get_style_rule": Call(lambda: d.get_style_rule("s-1"), nope),
        "get_style_rule_custom_instruction": Call(lambda: d.get_style_rule_custom_instruction("s-1", "i-1"), nope),
        "update_style_rule_configured_rules": Call(lambda: d.update_style_rule_configured_rules("s-1", {}), nope),
        "update_style_rule_custom_instruction": Call(
            lambda: d.update_style_rule_custom_instruction("s-1", "i-1", "tone", "be casual"), nope
        ),
        "update_style_rule_name": Call(lambda: d.update_style_rule_name("s-1", "x"), nope),
        "translate_document": Call(
            lambda: d.translate_document(
                io.BytesIO("晚安".encode()), io.BytesIO(), target_lang="EN-US", filename="post.txt"
            ),  # fmt: skip
            nope,
        ),
        "translate_document_from_filepath": Call(
            lambda: d.translate_document_from_filepath(document, scratch / "out.txt", target_lang="EN-US"), nope
        ),
        "translate_document_upload": Call(
            lambda: d.translate_document_upload(io.BytesIO("晚安".encode()), target_lang="EN-US", filename="p.txt"),
            nope,
        ),
        "translate_document_get_status": Call(lambda: d.translate_document_get_status(handle), nope),
        "translate_document_wait_until_done": Call(lambda: d.translate_document_wait_until_done(handle), nope),
        "translate_document_download": Call(lambda: d.translate_document_download(handle, io.BytesIO()), nope_streamed),
        "create_translation_memory_export": Call(lambda: d.create_translation_memory_export("tm-1"), nope),
        "create_translation_memory_import": Call(lambda: d.create_translation_memory_import("tm.tmx", 10), nope),
        "delete_translation_memory": Call(lambda: d.delete_translation_memory("tm-1"), nope),
        "export_translation_memory_to_filepath": Call(
            lambda: d.export_translation_memory_to_filepath("tm-1", scratch / "tm.tmx", timeout_s=5), nope
        ),
        "get_translation_memory": Call(lambda: d.get_translation_memory("tm-1"), nope),
        "get_translation_memory_job": Call(lambda: d.get_translation_memory_job("job-1"), nope),
        "import_translation_memory_from_filepath": Call(
            lambda: d.import_translation_memory_from_filepath(document, timeout_s=5), nope
        ),
        "list_translation_memories": Call(lambda: d.list_translation_memories(), nope),
        "list_translation_memory_segments": Call(lambda: d.list_translation_memory_segments("tm-1"), nope),
        "wait_until_translation_memory_job_done": Call(
            lambda: d.wait_until_translation_memory_job_done("job-1", timeout_s=5), nope
        ),
    }
    out.update({f"deepl.DeepLClient.{name}": call for name, call in deepl_calls.items()})

    lt = libretranslatepy.LibreTranslateAPI(base, api_key=KEY)
    out["libretranslatepy.LibreTranslateAPI.translate"] = Call(lambda: lt.translate("晚安", "zh", "en"),
                                                               lambda r: r == expected("晚安"))  # fmt: skip
    out["libretranslatepy.LibreTranslateAPI.detect"] = Call(
        lambda: lt.detect("晚安世界"), lambda r: r == [{"confidence": 100.0, "language": "zh"}]
    )
    out["libretranslatepy.LibreTranslateAPI.languages"] = Call(
        lambda: {x["code"] for x in lt.languages()}, lambda r: {"zh", "zt", "en"} <= r
    )
    return out


def _status(exc: BaseException) -> int | None:
    for name in ("status_code", "http_status_code"):
        value = getattr(exc, name, None)
        if isinstance(value, int):
            return value
    return None


def judge(call: Call) -> tuple[bool, str]:
    try:
        value = call.run()
    except Exception as exc:  # noqa: BLE001 - every outcome is reported
        got = f"{type(exc).__name__} ({_status(exc)}): {str(exc)[:150]}"
        if isinstance(call.check, Refused):
            ok = (
                isinstance(exc, call.check.errors) and _status(exc) == call.check.status and call.check.says in str(exc)
            )
            return ok, ("refused as documented: " if ok else "unexpected: ") + got
        return False, "raised: " + got
    if isinstance(call.check, Refused):
        return False, f"expected a refusal ({call.check.status}), got {str(value)[:150]!r}"
    ok = bool(call.check(value))
    return ok, ("result: " if ok else "wrong result: ") + repr(value)[:150]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(home: Path) -> Any:
    from redtrans.serve.config import hash_key

    port = free_port()
    config = home / "serve.yaml"
    config.write_text("cache: none\naccess_log: false\nengine: standin\n")
    exe = Path(sys.executable).with_name("redtrans")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "redtrans"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDTRANS_SERVE_", "REDTRANS_API_KEYS"))}
    env.update(REDTRANS_HOME=str(home), REDTRANS_API_KEYS=f"bench:{hash_key(KEY)}")
    log = (home / "serve.log").open("wb")
    proc = subprocess.Popen([*command, "serve", "--config", str(config), "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"serve exited {proc.returncode}: {(home / 'serve.log').read_text()[-800:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def main() -> int:
    names = introspect()
    counted = [n for n in names if n not in EXCLUDED]
    passed = 0
    with tempfile.TemporaryDirectory(prefix="redtrans-client-compat-") as tmp, serve(Path(tmp)) as base:
        table = calls(base, Path(tmp))
        for name in counted:
            call = table.get(name)
            ok, detail = judge(call) if call is not None else (False, "no call defined for this method: add one")
            passed += ok
            print(f"{'ok  ' if ok else 'MISS'} {name}: {detail}", flush=True)
    for name in names:
        if name in EXCLUDED:
            print(f"excluded {name}: {EXCLUDED[name]}")
    import deepl
    import libretranslatepy
    import openai

    versions = f"openai {openai.__version__}, deepl {deepl.__version__}, libretranslatepy"
    print(f"{len(names)} methods introspected ({versions} {getattr(libretranslatepy, '__version__', '?')}), "
          f"{len(EXCLUDED)} excluded")  # fmt: skip
    print(f"sdk_calls_ok: {passed}/{len(counted)} target: {len(counted)}/{len(counted)}")
    return 0 if passed == len(counted) else 1


if __name__ == "__main__":
    sys.exit(main())
