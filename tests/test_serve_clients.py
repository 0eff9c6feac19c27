"""The official SDKs from PyPI (`openai`, `deepl`, `libretranslatepy`) against a real `redtrans serve` (issue 33
items 8–11): what each client's own helpers call works, what redtrans does not do is refused in the API's own
shape, never ignored. `redtrans serve` runs as a process on the `standin` engine (deterministic, counts tokens
as characters)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_serve_compat import KEY, _expected, _serve

openai = pytest.importorskip("openai", reason="pip install openai (the dev extra has it)")
deepl = pytest.importorskip("deepl", reason="pip install deepl (the dev extra has it)")
libretranslatepy = pytest.importorskip("libretranslatepy", reason="pip install libretranslatepy (the dev extra)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _serve(tmp_path_factory.mktemp("clients"), "rate_limit_rps: 100\nrate_limit_burst: 500\n") as base:
        yield base


def test_openai_completions_responses_and_the_stream_helpers(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    post = "你好\n世界"
    expected = "\n".join(_expected(line, "en") for line in post.split("\n"))
    done = client.completions.create(model="redtrans-zh-en", prompt=["你好", "世界"])
    assert [c.text for c in done.choices] == [_expected("你好", "en"), _expected("世界", "en")]
    assert [c.index for c in done.choices] == [0, 1]
    pieces = [c.choices[0].text for c in client.completions.create(model="redtrans-zh-en", prompt=post, stream=True)]
    assert "".join(pieces) == expected
    with client.chat.completions.stream(model="redtrans-zh-en", messages=[{"role": "user", "content": post}]) as s:
        for _ in s:
            pass
        assert s.get_final_completion().choices[0].message.content == expected
    answer = client.responses.create(model="redtrans-zh-en", input="你好", instructions="ignored")
    assert answer.output_text == _expected("你好", "en") and answer.status == "completed"
    parts = [{"role": "user", "content": [{"type": "input_text", "text": "世界"}]}]
    assert client.responses.create(model="redtrans-zh-en", input=parts).output_text == _expected("世界", "en")
    with client.responses.stream(model="redtrans-zh-en", input=post) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == expected and final.output_text == expected


def test_openai_usage_is_the_engines_token_count(server: str) -> None:
    """The stand-in counts a token per character of what it is sent and answers; text units would count 3 for
    this post (three words). The translator's retry of a segment is paid too."""
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    post = "sleepy cats everywhere"
    done = client.chat.completions.create(model="redtrans-en-zh", messages=[{"role": "user", "content": post}])
    usage, answer = done.usage, done.choices[0].message.content or ""
    assert usage is not None and usage.completion_tokens in (len(answer), 2 * len(answer))  # with a retry: twice
    assert usage.prompt_tokens >= len(post) and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    again = client.chat.completions.create(model="redtrans-en-zh", messages=[{"role": "user", "content": post}])
    assert again.usage is not None and again.usage.total_tokens == 0  # a cached answer costs nothing


def test_openai_refuses_what_would_change_the_answer_and_names_what_it_serves(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    message = [{"role": "user", "content": "你好"}]
    refused = {
        "tools": lambda: client.chat.completions.create(
            model="redtrans", messages=message, tools=[{"type": "function", "function": {"name": "f"}}]
        ),
        "response_format": lambda: client.chat.completions.create(
            model="redtrans", messages=message, response_format={"type": "json_object"}
        ),
        "logprobs": lambda: client.chat.completions.create(model="redtrans", messages=message, logprobs=True),
        "n": lambda: client.chat.completions.create(model="redtrans", messages=message, n=2),
        "echo": lambda: client.completions.create(model="redtrans", prompt="你好", echo=True),
        "text.format": lambda: client.responses.create(
            model="redtrans", input="你好", text={"format": {"type": "json_object"}}
        ),
        "previous_response_id": lambda: client.responses.create(
            model="redtrans", input="你好", previous_response_id="resp_1"
        ),
    }
    for field, call in refused.items():
        with pytest.raises(openai.BadRequestError) as bad:
            call()
        assert isinstance(bad.value.body, dict) and bad.value.body["param"] == field, field
        assert bad.value.body["code"] == "unsupported_field" and f"`{field}`" in bad.value.body["message"]
    for call in (lambda: client.responses.retrieve("resp_1"), lambda: client.chat.completions.retrieve("c1")):
        with pytest.raises(openai.NotFoundError) as missing:
            call()
        assert isinstance(missing.value.body, dict) and "POST /v1/responses" in missing.value.body["message"]
    assert httpx.get(f"{server}/health").status_code == 200  # vLLM's probes
    assert httpx.get(f"{server}/version", headers={"Authorization": f"Bearer {KEY}"}).json() == {"version": "0.1.0"}


def test_deepl_client_usage_languages_glossaries_and_tags(server: str) -> None:
    translator = deepl.DeepLClient(KEY, server_url=server)
    before = translator.get_usage().character.count or 0
    result = translator.translate_text("晚安", target_lang="EN-US")
    assert result.text == _expected("晚安", "en") and result.detected_source_lang == "ZH"
    assert translator.get_usage().character.count == before + 2
    assert "ZH" in {lang.code for lang in translator.get_source_languages()}
    assert {"ZH-HANT", "EN-US", "PT-BR"} <= {lang.code for lang in translator.get_target_languages()}
    with pytest.raises(deepl.DeepLException, match="not supported"):
        translator.list_glossaries()
    with pytest.raises(deepl.DeepLException, match="not supported"):
        translator.create_glossary("slang", "ZH", "EN", {"绝绝子": "amazing"})
    with pytest.raises(deepl.DeepLException, match="glossary_id"):
        translator.translate_text("晚安", source_lang="ZH", target_lang="EN-US", glossary="g-1")
    # HTML: the tags stay where the text puts them, an ignored element's content is not translated.
    html = translator.translate_text(
        "<p>晚安<b>世界</b><code>不要翻译</code></p>", target_lang="EN-US", tag_handling="html", ignore_tags=["code"]
    )
    assert html.text.startswith("<p>") and html.text.endswith("<code>不要翻译</code></p>")
    assert "<b>" in html.text and "</b>" in html.text and "晚安" not in html.text and "世界" not in html.text
    xml = translator.translate_text("<t><s>晚安</s><keep>晚安</keep></t>", target_lang="EN-US", tag_handling="xml",
                                    ignore_tags="keep")  # fmt: skip
    assert xml.text == f"<t><s>{_expected('晚安', 'en')}</s><keep>晚安</keep></t>"
    with pytest.raises(deepl.AuthorizationException, match="DeepL-Auth-Key"):
        deepl.DeepLClient("wrong", server_url=server).translate_text("晚安", target_lang="EN-US")


def test_libretranslate_client_languages_detect_zt_and_html(server: str) -> None:
    client = libretranslatepy.LibreTranslateAPI(server, api_key=KEY)
    codes = {lang["code"]: lang for lang in client.languages()}  # a GET carrying `api_key`: no 403
    assert "zt" in codes and "zt" in codes["en"]["targets"]
    assert client.detect("晚安世界") == [{"confidence": 100.0, "language": "zh"}]
    assert client.translate("晚安", "zh", "en") == _expected("晚安", "en")
    assert client.translate("后来", "zh", "zt") == "後來"  # zt: Traditional Chinese
    r = httpx.post(
        f"{server}/translate",
        json={"q": "<i>晚安</i>", "source": "zh", "target": "en", "format": "html", "api_key": KEY},
    )
    assert r.status_code == 200 and r.json()["translatedText"] == f"<i>{_expected('晚安', 'en')}</i>"


def test_clients_are_answered_in_their_own_shape_for_bad_keys(server: str, tmp_path: Path) -> None:
    r = httpx.post(f"{server}/v2/translate", json={"text": ["晚安"], "target_lang": "EN-US"})
    assert r.status_code == 403 and "DeepL-Auth-Key" in r.json()["message"]
    r = httpx.post(f"{server}/translate", json={"q": "晚安", "target": "en"})
    assert r.status_code == 403 and "api_key" in r.json()["error"]
