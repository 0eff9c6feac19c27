"""Fault scenarios of issue 11 ("Nothing lost, nothing unbounded"), run for real on loopback.

Each scenario drives real `redtrans translate` / `redtrans serve` subprocesses against `StandInUpstream`
(tests/stand_ins.py: a threaded OpenAI-compatible HTTP server scripted to fail, hang or delay, counting
calls), prints what happened in numbers, and decides pass or miss:

1. failed_rows     upstream 500 for a 20-row JSONL: every row written `status: failed` with an error, exit 1;
                   after the upstream recovers a re-run gives 20 ok rows, exit 0.
2. unbounded_work  one item of 2,500 short lines, and a request needing > 1,000 model calls: 413 with upstream
                   calls <= the documented cap; an allowed request stays under the cap.
3. hung_upstream   the upstream hangs ~8 s then recovers: first healthy 200 from serve within 5 s of recovery
                   (clients give up after 3 s, as real clients with timeouts do).
4. shutdown_hung   SIGTERM with requests in flight against a hung upstream (graceful_shutdown_s=3): exit
                   within grace + 5 s, every response the clients got is JSON.
5. doors           keys on: no key -> 401/403 on /v1/translate, /metrics, /docs, /openapi.json and the
                   OpenAI/DeepL/LibreTranslate routes; the embedded llama.cpp listener refuses a keyless
                   request (needs qwen2.5-coder-0.5b's GGUF; skipped, and not counted as passed, without it).
6. two_writers     a second writer of the same JSONL output is refused (exit 2, one line), no duplicate ids.
10. changed_input  (issue 32 item 3) 10 rows translated; 2 rows' text edited: the rerun redoes exactly those 2
                   (their new lines supersede the old, one line per id), the other 8 untouched; `--tgt de` on
                   the same output is refused (exit 2) and `--overwrite` redoes all.
11. outage_recovery (item 4) the upstream answers 500 for MAX_ATTEMPTS + 1 runs (each exits 1 and says the
                   rows do not count against the attempt cap); it recovers and the next run translates every
                   row (upstream calls made, exit 0). A 400 (permanent) does count: after MAX_ATTEMPTS runs
                   the row is failed for good, and `--retry-failed` tries it again.
12. full_disk      (item 6) the output on a 1 MB tmpfs (`mount -t tmpfs`; skipped, and not counted as passed,
                   where it cannot be mounted): translate to JSONL and to Parquet, sample and prefs export fill
                   it; each exits 2 with one line "no space left on device", leaves no temp file, keeps the
                   rows journaled before it, and once the disk grows (remount 16 MB) the same command resumes
                   and finishes with every row once.

Issue 32 (round 3), serve:
7. form_utf8       docs/serve.md's curl example (raw UTF-8 bytes in a form) on /v2/translate and /translate
                   reaches the model intact and is detected as zh; invalid bytes are 400.
8. refusals_through_routes  an upstream that refuses or answers nothing: 422 `no_translation` on the OpenAI
                   (chat, completions, responses), DeepL, LibreTranslate and native routes, never a 200 with the
                   refusal; the native batch answers its other item; a stream ends with an error event, no [DONE].
9. hang_recovery   the upstream hangs 8, 20 and 60 s, clients wait for answers (35 s): the first 200 after the
                   recovery within breaker_cooldown_s + 1 s (3 s) each time.

Run from the repository root: ``.venv/bin/python benchmarks/faults.py``. Ends with
``faults_passed: N/M target: M/M`` and exits 1 on any miss.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redtrans.jsonl import JSONLWriter, read_jsonl  # noqa: E402
from redtrans.serve.config import hash_key  # noqa: E402
from tests.stand_ins import Reply, StandInUpstream, completion  # noqa: E402

BIN = Path(sys.executable).parent / "redtrans"
CMD = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "redtrans"]
PROCS: list[subprocess.Popen[bytes]] = []
TMP = Path(tempfile.mkdtemp(prefix="redtrans-faults-"))
GGUF = Path.home() / ".cache/redtrans/models/qwen2.5-coder-0.5b-instruct.gguf"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDTRANS_SERVE_", "REDTRANS_API_KEYS"))}
    base["REDTRANS_HOME"] = str(TMP / "home")
    base.update(extra)
    return base


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, str, bytes]:
    """(status, content type, body); status 0 when no answer came (connection error or client timeout)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()
    except (OSError, TimeoutError):
        return 0, "", b""


def http_raw(
    method: str, url: str, data: bytes, headers: dict[str, str], timeout: float = 10.0
) -> tuple[int, str, bytes]:
    """`http` with a body sent as the given bytes (forms)."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()
    except (OSError, TimeoutError):
        return 0, "", b""


class Serve:
    """A `redtrans serve` subprocess gateway to `upstream_url`, ready when /readyz answers 200."""

    def __init__(self, upstream_url: str, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (TMP / f"serve-{self.port}.log").open("wb")
        extra = {"REDTRANS_SERVE_CACHE": "none", "REDTRANS_SERVE_ACCESS_LOG": "false", **settings}
        self.proc = subprocess.Popen(
            [*CMD, "serve", "--engine", "openai", "--model", upstream_url, "--port", str(self.port)],
            env=env(**extra), stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        PROCS.append(self.proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.tail()}")
            if http("GET", self.url + "/readyz", timeout=2)[0] == 200:
                return
            time.sleep(0.2)
        raise RuntimeError(f"serve not ready within 60 s: {self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return (TMP / f"serve-{self.port}.log").read_text(errors="replace")[-800:]

    def post(self, body: Any, timeout: float = 30.0, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
        return http("POST", self.url + "/v1/translate", body, headers, timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def run_cli(args: list[str], timeout: float = 180.0, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], env=env(**extra), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def error_code(body: bytes) -> str:
    """The error code of redtrans's JSON shape, else the body's start (DeepL and LibreTranslate have their own)."""
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return body[:60].decode(errors="replace")


# -- scenarios -----------------------------------------------------------------------------------------


def failed_rows() -> bool:
    down = {"on": True}
    upstream = StandInUpstream(lambda i, b: Reply(status=500, body={"error": "down"}) if down["on"] else Reply())
    try:
        src, out = TMP / "rows.jsonl", TMP / "rows.out.jsonl"
        rows_in = [{"id": f"r{n}", "text": f"这家店的奶茶第{n}杯真好喝"} for n in range(20)]
        src.write_text("".join(json.dumps(row) + "\n" for row in rows_in))
        args = ["translate", "-i", str(src), "-o", str(out), "--engine", "openai", "--model", upstream.url,
                "--src", "zh", "--tgt", "en"]  # fmt: skip
        t0 = time.monotonic()
        first = run_cli(args)
        t1 = time.monotonic() - t0
        rows = [row for _, row in read_jsonl(out)] if out.exists() else []
        ids = {row.get("id") for row in rows}
        failed = [r for r in rows if r.get("status") == "failed" and r.get("error")]
        silent = [r for r in rows if r.get("status") != "failed" and not (r.get("translation") or "").strip()]
        lost = 20 - len(ids & {f"r{n}" for n in range(20)})
        calls_down = upstream.calls
        last_err = (first.stderr.strip().splitlines() or [""])[-1][:160]
        print(
            f"  run 1 (upstream 500): exit {first.returncode} in {t1:.1f}s, rows {len(rows)}, failed+error "
            f"{len(failed)}, silently empty {len(silent)}, lost {lost}, upstream calls {calls_down}"
        )
        print(f"    stderr: {last_err}")
        down["on"] = False
        t0 = time.monotonic()
        second = run_cli(args)
        t2 = time.monotonic() - t0
        rows2 = [row for _, row in read_jsonl(out)]
        ok2 = [r for r in rows2 if r.get("status", "ok") == "ok" and (r.get("translation") or "").strip()]
        ids2 = [r.get("id") for r in rows2]
        print(
            f"  run 2 (recovered): exit {second.returncode} in {t2:.1f}s, rows {len(rows2)}, ok {len(ok2)}, "
            f"duplicate ids {len(ids2) - len(set(ids2))}, upstream calls {upstream.calls - calls_down}"
        )
        return (first.returncode == 1 and len(failed) == 20 and not silent and lost == 0
                and second.returncode == 0 and len(ok2) == 20 and len(rows2) == 20)  # fmt: skip
    finally:
        upstream.close()


def unbounded_work() -> bool:
    upstream = StandInUpstream()
    serve = Serve(upstream.url, REDTRANS_SERVE_MAX_TEXT_CHARS="100000")
    try:
        # "documented cap": max_model_calls (1,000), max_segments_per_item (200); docs/serve.md
        cap_calls, cap_segments = 1000, 200
        lines = "\n".join(f"好吃{n}" for n in range(2500))
        status, _, body = serve.post({"items": [{"text": lines, "src": "zh", "tgt": "en"}]}, timeout=60)
        calls_a = upstream.calls
        print(f"  one item of 2,500 lines: {status} {error_code(body)}, upstream calls {calls_a}")
        texts = ["\n".join(f"第{i}条第{j}行好吃" for j in range(20)) for i in range(64)]
        items = [{"text": text, "src": "zh", "tgt": "en"} for text in texts]
        status_b, _, body_b = serve.post({"items": items}, timeout=60)
        calls_b = upstream.calls - calls_a
        print(
            f"  64 items x 20 lines (1,280 segments, none cached): {status_b} {error_code(body_b)}, "
            f"upstream calls {calls_b}"
        )
        allowed = {"items": [{"text": "\n".join(f"第{j}行的奶茶绝绝子" for j in range(cap_segments)), "src": "zh",
                              "tgt": "en"}]}  # fmt: skip
        before = upstream.calls
        status_c, _, body_c = serve.post(allowed, timeout=120)
        calls_c = upstream.calls - before
        print(
            f"  allowed: one item of {cap_segments} lines: {status_c} {error_code(body_c) if status_c != 200 else ''}"
            f" upstream calls {calls_c} (cap {cap_calls})"
        )
        return (status == 413 and calls_a <= cap_calls and status_b == 413 and calls_b <= cap_calls
                and status_c == 200 and calls_c <= cap_calls)  # fmt: skip
    finally:
        serve.stop()
        upstream.close()


def hung_upstream() -> bool:
    start = time.monotonic()
    hang_from, recover_at = start + 3600, start + 3600  # set once serve is up

    def behave(index: int, body: dict[str, Any]) -> Reply:
        now = time.monotonic()
        if hang_from <= now < recover_at:
            return Reply(delay=recover_at - now + 60)  # a call taken during the hang never answers in time
        return Reply()

    upstream = StandInUpstream(behave)
    serve = Serve(upstream.url)
    results: list[tuple[float, float, int]] = []
    lock = threading.Lock()

    def probe(n: int) -> None:
        sent = time.monotonic()
        status = serve.post({"items": [{"text": f"奶茶第{n}杯好喝", "src": "zh", "tgt": "en"}]}, timeout=3)[0]
        with lock:
            results.append((sent, time.monotonic(), status))

    try:
        hang_from = time.monotonic()
        recover_at = hang_from + 8
        threads = []
        n = 0
        while time.monotonic() < recover_at + 30:  # long enough to measure a miss, not only to see it
            thread = threading.Thread(target=probe, args=(n,), daemon=True)
            thread.start()
            threads.append(thread)
            n += 1
            with lock:
                if any(done > recover_at and status == 200 for _, done, status in results):
                    break
            time.sleep(0.5)
        for thread in threads:
            thread.join(5)
        with lock:
            during = [s for sent, done, s in results if done <= recover_at]
            healthy = sorted(done for _, done, s in results if s == 200 and done > recover_at)
        took = healthy[0] - recover_at if healthy else float("inf")
        print(
            f"  probes {len(results)} (one per 0.5 s, client timeout 3 s); during the 8 s hang: "
            f"{sum(1 for s in during if s == 200)} ok / {len(during)}; upstream calls {upstream.calls}"
        )
        print(f"  recovery -> first healthy 200: {took:.2f}s (target <= 5 s)")
        return took <= 5.0
    finally:
        serve.stop()
        upstream.close()


def shutdown_hung() -> bool:
    upstream = StandInUpstream(lambda i, b: Reply(delay=120))
    grace = 3.0
    serve = Serve(upstream.url, REDTRANS_SERVE_GRACEFUL_SHUTDOWN_S=str(grace))
    got: list[tuple[int, str, bytes]] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        answer = serve.post({"items": [{"text": f"关机第{n}条", "src": "zh", "tgt": "en"}]}, timeout=30)
        with lock:
            got.append(answer)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while upstream.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        t0 = time.monotonic()
        serve.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            serve.proc.wait(grace + 10)
        exited = time.monotonic() - t0 if serve.proc.poll() is not None else float("inf")
        for thread in threads:
            thread.join(10)
        answered = [a for a in got if a[0] != 0]
        non_json = [a for a in answered if "application/json" not in a[1]]
        for status, ctype, body in non_json:
            print(f"    non-JSON answer: {status} {ctype} {body[:80]!r}")
        codes = sorted(f"{s} {error_code(b)}" for s, _, b in answered)
        print(
            f"  upstream calls in flight {upstream.calls}; exit {serve.proc.returncode} after {exited:.2f}s "
            f"(bound {grace + 5:.0f} s); answers {len(answered)}/8 {codes}; no answer {len(got) - len(answered)}; "
            f"non-JSON {len(non_json)}"
        )
        return exited <= grace + 5 and not non_json
    finally:
        serve.stop()
        upstream.close()


LLAMA_PROBE = r"""
import json, sys, urllib.request, urllib.error
from redtrans.engines.llamacpp import LlamaCppConfig, LlamaCppEngine
engine = LlamaCppEngine(LlamaCppConfig(model="qwen2.5-coder-0.5b", n_parallel=1))
address = engine.listening_address.rstrip("/")
if not address.startswith("http"):
    address = "http://" + address
body = json.dumps({"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}).encode()
def status(key):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    request = urllib.request.Request(address + "/v1/chat/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
seen = {"address": address, "no_key": status(None), "wrong_key": status("nope"), "key": status(engine.api_key)}
print(json.dumps(seen))
sys.stdout.flush()
engine.close()
"""


def doors() -> tuple[bool, bool]:
    """(passed, ran_fully)."""
    upstream = StandInUpstream()
    key = "faults-benchmark-key"
    serve = Serve(upstream.url, REDTRANS_API_KEYS=f"bench:{hash_key(key)}")
    try:
        chat = {"model": "m", "messages": [{"role": "user", "content": "你好"}]}
        probes: list[tuple[str, str, Any]] = [
            ("POST", "/v1/translate", {"items": [{"text": "你好", "tgt": "en"}]}),
            ("GET", "/metrics", None),
            ("GET", "/docs", None),
            ("GET", "/openapi.json", None),
            ("POST", "/v1/chat/completions", chat),
            ("POST", "/v2/translate", {"text": ["你好"], "target_lang": "EN"}),
            ("POST", "/translate", {"q": "你好", "source": "zh", "target": "en"}),
        ]
        refused = 0
        for method, path, body in probes:
            status, _, answer = http(method, serve.url + path, body, timeout=10)
            refused += status in (401, 403)
            print(f"  no key {method} {path}: {status} {error_code(answer)}")
        keyed = http("POST", serve.url + "/v1/translate", probes[0][2], {"Authorization": f"Bearer {key}"}, 30)[0]
        print(f"  with the key POST /v1/translate: {keyed}; upstream calls {upstream.calls}")
        serve_ok = refused == len(probes) and keyed == 200
    finally:
        serve.stop()
        upstream.close()
    if not GGUF.exists():
        print(f"  llama.cpp listener: SKIPPED ({GGUF} missing) - not counted as passed")
        return False, False
    try:
        done = subprocess.run([sys.executable, "-c", LLAMA_PROBE], env=env(), capture_output=True, text=True,
                              timeout=240, cwd=ROOT)  # fmt: skip
    except subprocess.TimeoutExpired:
        print("  llama.cpp listener: probe timed out (240 s)")
        return False, True
    line = (done.stdout.strip().splitlines() or ["{}"])[-1]
    try:
        seen = json.loads(line)
    except ValueError:
        print(f"  llama.cpp listener: probe failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
        return False, True
    print(
        f"  llama.cpp listener {seen.get('address')}: no key {seen.get('no_key')}, wrong key "
        f"{seen.get('wrong_key')}, own key {seen.get('key')}"
    )
    llama_ok = seen.get("no_key") in (401, 403) and seen.get("wrong_key") in (401, 403) and seen.get("key") == 200
    return serve_ok and llama_ok, True


def two_writers() -> bool:
    src, out = TMP / "writers.jsonl", TMP / "writers.out.jsonl"
    src.write_text("".join(json.dumps({"id": f"w{n}", "text": f"第{n}条帖子好吃"}) + "\n" for n in range(10)))
    args = ["translate", "-i", str(src), "-o", str(out), "--engine", "standin", "--src", "zh", "--tgt", "en"]
    half = TMP / "writers.half.jsonl"
    half.write_text("".join(json.dumps({"id": f"w{n}", "text": f"第{n}条帖子好吃"}) + "\n" for n in range(5)))
    run_cli([args[0], "-i", str(half), *args[3:]], timeout=120)  # the first writer's first 5 rows
    with JSONLWriter(out):  # the first writer, still writing
        second = run_cli(args, timeout=120)
    lines = [ln for ln in second.stderr.strip().splitlines() if ln.strip()]
    rows = [row for _, row in read_jsonl(out)]
    ids = [r.get("id") for r in rows]
    print(
        f"  second writer while the lock is held: exit {second.returncode}, stderr lines {len(lines)}: "
        f"{(lines or [''])[0][:160]}"
    )
    third = run_cli(args, timeout=120)
    rows = [row for _, row in read_jsonl(out)]
    ids = [r.get("id") for r in rows]
    print(
        f"  after release, a run finishes the file: exit {third.returncode}, rows {len(rows)}, "
        f"duplicate ids {len(ids) - len(set(ids))}"
    )
    return second.returncode == 2 and len(lines) == 1 and len(ids) == len(set(ids)) == 10 and third.returncode == 0


# -- serve, round 3 (issue 32 items 1, 2 and 5) ---------------------------------------------------------


def _toy_upstream(refuse: str = "拒绝", empty: str = "空") -> StandInUpstream:
    """An upstream that 'translates' (any text → `hello`), refuses texts holding `refuse` and answers texts
    holding `empty` with nothing — on the retry too."""

    def behave(index: int, body: dict[str, Any]) -> Reply:
        text = json.dumps(body.get("messages", ""), ensure_ascii=False)
        answer = "I'm sorry, but I can't assist with that." if refuse in text else "" if empty in text else "hello"
        return Reply(body=completion(body, answer)) if "messages" in body else Reply()

    return StandInUpstream(behave)


def form_utf8() -> bool:
    """Item 1: docs/serve.md's curl example (raw UTF-8 in a urlencoded form) reaches the model as the text it is
    on /v2/translate and /translate; invalid bytes are 400."""
    upstream = _toy_upstream()
    serve = Serve(upstream.url)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        checks = []
        for path, raw, post in (
            ("/v2/translate", "text={}&target_lang=EN-US", "这家店的奶茶绝绝子🧋"),
            ("/translate", "q={}&source=auto&target=en", "那家店的奶茶也绝绝子🧋"),  # another text: no cache hit
        ):
            before = upstream.calls
            status, _, body = http_raw("POST", serve.url + path, raw.format(post).encode(), form)
            sent = [json.dumps(b, ensure_ascii=False) for b in upstream.bodies[before:]]
            reached = any(post.rstrip("🧋") in s for s in sent)
            detected = json.loads(body).get("translations", [{}])[0].get("detected_source_language") if body else None
            if path == "/translate":
                detected = (json.loads(body).get("detectedLanguage") or {}).get("language") if status == 200 else None
            print(f"  {path} raw UTF-8 form: {status}, text reached the model intact: {reached}, detected {detected}")
            checks.append(status == 200 and reached and str(detected).lower() == "zh")
            bad, _, answer = http_raw("POST", serve.url + path, b"text=\xff\xfe&q=\xff&target_lang=EN&target=en", form)
            print(f"  {path} invalid bytes: {bad} {answer[:80]!r}")
            checks.append(bad == 400)
        return all(checks)
    finally:
        serve.stop()
        upstream.close()


def refusals_through_routes() -> bool:
    """Item 2: an upstream that refuses or answers nothing, through every route: 422 `no_translation` (never a
    200 with the refusal in it), the native batch's other items answered, streams end without success."""
    upstream = _toy_upstream()
    serve = Serve(upstream.url)
    refusal, empty = "请拒绝这个帖子", "空空的帖子"
    calls = {
        "/v1/chat/completions": {"model": "redtrans-zh-en", "messages": [{"role": "user", "content": refusal}]},
        "/v1/completions": {"model": "redtrans-zh-en", "prompt": empty},
        "/v1/responses": {"model": "redtrans-zh-en", "input": refusal},
        "/v2/translate": {"text": ["今天很好", refusal], "target_lang": "EN-US"},
        "/translate": {"q": empty, "source": "zh", "target": "en"},
        "/v1/translate": {"items": [{"text": refusal, "tgt": "en"}]},
    }
    try:
        ok = True
        for path, body in calls.items():
            status, _, answer = http("POST", serve.url + path, body, timeout=30)
            leaked = b"sorry" in answer.lower()
            print(f"  {path}: {status} {error_code(answer)[:40]}{' (the refusal leaked!)' if leaked else ''}")
            ok &= status == 422 and not leaked
        batch = {"items": [{"text": "今天很好", "tgt": "en"}, {"text": refusal, "tgt": "en"}]}
        status, _, answer = http("POST", serve.url + "/v1/translate", batch, timeout=30)
        states = [t.get("status") for t in json.loads(answer).get("translations", [])] if status == 200 else []
        print(f"  /v1/translate batch of 2, one refused: {status}, statuses {states}")
        ok &= states == ["ok", "failed"]
        stream = {
            "model": "redtrans-zh-en",
            "stream": True,
            "messages": [{"role": "user", "content": f"晚安\n{refusal}"}],
        }
        status, _, answer = http("POST", serve.url + "/v1/chat/completions", stream, timeout=30)
        done = b"[DONE]" in answer
        print(f"  stream, second line refused: {status}, ends with an error event: {b'no_translation' in answer}, "
              f"[DONE] sent: {done}")  # fmt: skip
        ok &= status == 200 and b"no_translation" in answer and not done
        return ok
    finally:
        serve.stop()
        upstream.close()


def hang_recovery() -> bool:
    """Item 5: the upstream hangs for 8, 20 and 60 s (everything it accepts meanwhile, its /models too, never
    answers in time), then recovers. Clients send a request every 0.5 s and wait for the answer (35 s, past
    serve's 30 s deadline). The first 200 after the recovery must come within breaker_cooldown_s + 1 s (3 s)."""
    cooldown = 2.0  # OpenAIConfig.breaker_cooldown_s
    results = []
    lock = threading.Lock()
    for hang in (8.0, 20.0, 60.0):
        window = {"from": float("inf"), "to": float("inf")}

        def behave(index: int, body: dict[str, Any], window: dict[str, float] = window) -> Reply:
            now = time.monotonic()
            if window["from"] <= now < window["to"]:
                return Reply(delay=window["to"] - now + 60)
            return Reply()

        upstream = StandInUpstream(behave)
        serve = Serve(upstream.url)
        answers: list[tuple[float, float, int]] = []

        def client(n: int, serve: Serve = serve, answers: list[tuple[float, float, int]] = answers) -> None:
            sent = time.monotonic()
            status = serve.post({"items": [{"text": f"奶茶第{n}杯好喝", "src": "zh", "tgt": "en"}]}, timeout=35)[0]
            with lock:
                answers.append((sent, time.monotonic(), status))

        try:
            window["from"] = time.monotonic()
            window["to"] = window["from"] + hang
            threads = []
            n = 0
            while time.monotonic() < window["to"] + 15:
                thread = threading.Thread(target=client, args=(n,), daemon=True)
                thread.start()
                threads.append(thread)
                n += 1
                with lock:
                    if any(done > window["to"] and status == 200 for _, done, status in answers):
                        break
                time.sleep(0.5)
            for thread in threads:
                thread.join(40)
            with lock:
                healthy = sorted(done for _, done, status in answers if status == 200 and done > window["to"])
                during = [status for sent, done, status in answers if done <= window["to"]]
                slowest = max((done - sent for sent, done, _ in answers if sent < window["to"]), default=0.0)
            took = healthy[0] - window["to"] if healthy else float("inf")
            print(f"  hang {hang:.0f} s: answered during it {len(during)} ({sorted(set(during))}), slowest answer "
                  f"{slowest:.1f} s; recovery -> first 200: {took:.2f} s (target <= {cooldown + 1:.0f} s)")  # fmt: skip
            results.append(took <= cooldown + 1.0)
        finally:
            serve.stop()
            upstream.close()
    return all(results)


def changed_input() -> bool:
    src, out = TMP / "changed.jsonl", TMP / "changed.out.jsonl"
    rows_in = [{"id": f"c{n}", "text": f"第{n}家店的奶茶绝绝子"} for n in range(10)]
    src.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows_in), encoding="utf-8")
    args = ["translate", "-i", str(src), "-o", str(out), "--engine", "standin", "--src", "zh", "--tgt", "en"]
    first = run_cli(args)
    before = {row["id"]: row for _, row in read_jsonl(out)}
    rows_in[3]["text"], rows_in[7]["text"] = "这家店的奶茶真的绝绝子", "周末一起去爬山吧"
    src.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows_in), encoding="utf-8")
    second = run_cli(args)
    after = [row for _, row in read_jsonl(out)]
    by_id = {row["id"]: row for row in after}
    redone = sorted(k for k, row in by_id.items() if row != before.get(k))
    summary = " ".join(second.stderr.split())  # rich wraps lines on a pipe
    summary = summary[summary.find("translated") :]
    print(f"  run 1: exit {first.returncode}, rows {len(before)}; 2 texts edited -> run 2: exit {second.returncode}")
    print(f"    {summary[:160]}")
    print(f"  rows after: {len(after)} lines, {len(by_id)} ids; redone {redone}; texts follow the input: "
          f"{by_id['c3']['text'] == rows_in[3]['text'] and by_id['c7']['text'] == rows_in[7]['text']}")  # fmt: skip
    refused = run_cli([*args[:-1], "de"])
    lines = [ln for ln in refused.stderr.strip().splitlines() if ln.strip()]
    overwrite = run_cli([*args[:-1], "de", "--overwrite"])
    tgts = {row["tgt"] for _, row in read_jsonl(out)}
    print(f"  --tgt de: exit {refused.returncode}, {len(lines)} line: {(lines or [''])[0][:140]}")
    print(f"  --tgt de --overwrite: exit {overwrite.returncode}, targets now {sorted(tgts)}")
    return (first.returncode == 0 and second.returncode == 0 and redone == ["c3", "c7"] and len(after) == 10
            and "2 changed since last run" in summary and refused.returncode == 2 and len(lines) == 1
            and overwrite.returncode == 0 and tgts == {"de"})  # fmt: skip


def outage_recovery() -> bool:
    from redtrans.jsonl import MAX_ATTEMPTS

    state = {"status": 500}
    upstream = StandInUpstream(
        lambda i, b: Reply(status=state["status"], body={"error": "down"}) if state["status"] != 200 else Reply(
            body=completion(b, "so good I could cry"))
    )  # fmt: skip
    try:
        src, out = TMP / "outage.jsonl", TMP / "outage.out.jsonl"
        src.write_text("".join(json.dumps({"id": f"o{n}", "text": f"第{n}杯奶茶太好喝了"}) + "\n" for n in range(5)))
        args = ["translate", "-i", str(src), "-o", str(out), "--model", upstream.url, "--src", "zh", "--tgt", "en",
                "--max-retries", "0"]  # fmt: skip
        outage_ok = True
        for run in range(MAX_ATTEMPTS + 1):
            proc = run_cli(args)
            said = "do not count against the attempt cap" in proc.stderr
            outage_ok &= proc.returncode == 1 and said
            print(f"  outage run {run + 1}: exit {proc.returncode}, says not counted: {said}")
        state["status"] = 200
        calls = upstream.calls
        recovered = run_cli(args)
        ok_rows = [row for _, row in read_jsonl(out) if row.get("status") == "ok"]
        made = upstream.calls - calls
        print(f"  recovered: exit {recovered.returncode}, upstream calls {made}, ok rows {len(ok_rows)}/5")
        # A permanent error (400) counts against the cap; --retry-failed resets it.
        src2, out2 = TMP / "permanent.jsonl", TMP / "permanent.out.jsonl"
        src2.write_text(json.dumps({"id": "p", "text": "太好吃了"}) + "\n")
        args2 = [*args[:2], str(src2), args[3], str(out2), *args[5:]]
        state["status"] = 400
        for _ in range(MAX_ATTEMPTS):
            run_cli(args2)
        state["status"] = 200
        calls = upstream.calls
        capped = run_cli(args2)
        capped_calls = upstream.calls - calls
        retried = run_cli([*args2, "--retry-failed"])
        print(f"  400 x {MAX_ATTEMPTS}: then exit {capped.returncode} with {capped_calls} calls (failed for good); "
              f"--retry-failed: exit {retried.returncode}")  # fmt: skip
        return (outage_ok and recovered.returncode == 0 and upstream.calls > calls and len(ok_rows) == 5
                and capped.returncode == 1 and capped_calls == 0 and retried.returncode == 0)  # fmt: skip
    finally:
        upstream.close()


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def _full_disk_case(name: str, disk: Path, args: list[str], rows_of: Callable[[], list[Any]], want: int) -> bool:
    """One command on a full 1 MB tmpfs, then on the same tmpfs grown to 16 MB."""
    full = run_cli(args, timeout=300)
    lines = [ln for ln in full.stderr.strip().splitlines() if ln.startswith("error:")]
    temps = sorted(p.name for p in disk.rglob("*") if p.name.endswith(".tmp"))
    kept = rows_of()
    subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
    again = run_cli(args, timeout=300)
    rows = rows_of()
    ids = [str(r) for r in rows]
    print(f"  {name}: full disk -> exit {full.returncode}, traceback {'Traceback' in full.stderr}, error lines "
          f"{len(lines)}: {(lines or [''])[0][:110]}")  # fmt: skip
    print(f"    temp files left {temps}, rows kept {len(kept)}; after the disk grows: exit {again.returncode}, rows "
          f"{len(rows)} ({len(set(ids))} distinct, want {want})")  # fmt: skip
    return (full.returncode == 2 and "Traceback" not in full.stderr and len(lines) == 1
            and "no space left on device" in lines[0] and not temps and again.returncode == 0
            and len(rows) == len(set(ids)) == want)  # fmt: skip


def full_disk() -> tuple[bool, bool]:
    """(passed, ran_fully)."""
    root = TMP / "disks"
    probe = root / "probe"
    if not _mount_tmpfs(probe, "1m"):
        print("  SKIPPED: cannot mount a tmpfs here (needs root) - not counted as passed")
        return False, False
    subprocess.run(["umount", str(probe)], check=False)
    data = TMP / "fill.jsonl"
    long_post = "这家店的奶茶绝绝子，姐妹们冲！" * 60  # ~900 characters: ~9 KB a row with its translation
    data.write_text("".join(json.dumps({"id": f"f{n}", "text": f"{n}{long_post}"}, ensure_ascii=False) + "\n"
                            for n in range(200)), encoding="utf-8")  # fmt: skip
    results = []
    try:
        disk = root / "translate"
        _mount_tmpfs(disk, "1m")
        out = disk / "out.jsonl"
        args = ["translate", "-i", str(data), "-o", str(out), "--engine", "standin", "--src", "zh", "--tgt", "en"]
        results.append(_full_disk_case("translate -o .jsonl", disk, args, lambda: _ids(out), 200))
        disk = root / "parquet"
        _mount_tmpfs(disk, "1m")
        pq_out = disk / "out.parquet"
        args = ["translate", "-i", str(data), "-o", str(pq_out), "--engine", "standin", "--src", "zh", "--tgt", "en"]
        results.append(_full_disk_case("translate -o .parquet", disk, args, lambda: _parquet_ids(pq_out), 200))
        disk = root / "sample"
        _mount_tmpfs(disk, "1m")
        corpus = TMP / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"text": f"{n}{long_post[:300]}"}, ensure_ascii=False) + "\n"
                                  for n in range(150)), encoding="utf-8")  # fmt: skip
        args = ["sample", "-i", str(corpus), "--src", "zh", "--tgt", "en", "-o", str(disk / "run"), "--set",
                "m1.kind=standin", "--set", "m2.kind=standin", "--set", "m2.options={salt: 2}", "--set",
                "score_workers=1"]  # fmt: skip
        results.append(_full_disk_case("sample", disk, args, lambda: _ids(disk / "run" / "journal.jsonl"), 150))
        disk = root / "export"
        _mount_tmpfs(disk, "1m")
        cands = TMP / "cands.jsonl"
        cands.write_text("".join(json.dumps({
            "id": f"c{n}", "source": long_post, "src": "zh", "tgt": "en", "reference": "so good " * 100,
            "status": "ok",
            "candidates": [{"text": "nice " * 150, "system": "a"}, {"text": "good " * 160, "system": "b"}],
        }, ensure_ascii=False) + "\n" for n in range(300)), encoding="utf-8")  # fmt: skip
        export = disk / "pairs.jsonl"
        args = ["prefs", "export", "--mode", "reference-rewrite", "-i", str(cands), "-o", str(export)]
        # reference-rewrite gives two pairs an item (the reference over each candidate)
        results.append(_full_disk_case("prefs export", disk, args, lambda: _ids(export), 600))
    finally:
        for disk in sorted(root.iterdir()):
            subprocess.run(["umount", str(disk)], capture_output=True)
    return all(results) and len(results) == 4, True


def _ids(path: Path) -> list[Any]:
    from redtrans.jsonl import repair_tail

    if not path.is_file():
        return []
    repair_tail(path)
    return [row.get("id") for _, row in read_jsonl(path)]


def _parquet_ids(path: Path) -> list[Any]:
    import pyarrow.parquet as pq

    return list(pq.read_table(path).column("id").to_pylist()) if path.is_file() else []


def main() -> int:
    scenarios: list[tuple[str, Callable[[], Any]]] = [
        ("failed_rows", failed_rows),
        ("unbounded_work", unbounded_work),
        ("hung_upstream", hung_upstream),
        ("shutdown_hung", shutdown_hung),
        ("doors", doors),
        ("two_writers", two_writers),
        ("form_utf8", form_utf8),
        ("refusals_through_routes", refusals_through_routes),
        ("hang_recovery", hang_recovery),
        ("changed_input", changed_input),
        ("outage_recovery", outage_recovery),
        ("full_disk", full_disk),
    ]
    only = set(sys.argv[1:])
    passed = total = 0
    try:
        for name, scenario in scenarios:
            if only and name not in only:
                continue
            total += 1
            print(f"[{name}]", flush=True)
            t0 = time.monotonic()
            try:
                result = scenario()
            except Exception as exc:  # noqa: BLE001 - a scenario that crashes is a miss, reported
                print(f"  error: {type(exc).__name__}: {exc}")
                result = False
            ok = result[0] if isinstance(result, tuple) else bool(result)
            skipped = isinstance(result, tuple) and not result[1]
            passed += ok
            verdict = "SKIPPED (not passed)" if skipped else "pass" if ok else "MISS"
            print(f"  -> {verdict} ({time.monotonic() - t0:.1f}s)", flush=True)
    finally:
        for proc in PROCS:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"faults_passed: {passed}/{total} target: {total}/{total}")
    return 0 if passed == total else 1


if __name__ == "__main__":
    sys.exit(main())
