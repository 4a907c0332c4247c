"""The loopback API: a real uvicorn server on a free loopback port, real HTTP clients, the real model.

One server (queue of 1) serves the whole module; tests that need it idle wait for the engine.
Generated lengths are kept small with ``max_tokens``; where a test needs a long generation it
forces one with a JSON schema (``minItems``), so the length never depends on the model's whim.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx2 as httpx
import pytest
from click.testing import CliRunner

from localpers.cli import main
from localpers.history import History
from localpers.llm import Engine
from localpers.paths import Config
from localpers.serve import LocalServer, Service, ServeError, check_host, create_app, free_port
from localpers.vault import Vault
from localpers.writing.writer import Writer
from support import MARA_TEXTS as TEXTS
from test_vault_canary import encodings, scan

# A schema whose grammar forces at least 120 array items: a generation that cannot end early.
LONG = {"type": "json_schema", "json_schema": {"name": "long", "schema": {
    "type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 9}, "minItems": 120}}}


@pytest.fixture(scope="module")
def engine():
    # One thread: on a busy 2-core machine llama.cpp's two threads wait on each other for seconds a token.
    return Engine("gemma3-270m", threads=1)


@pytest.fixture(scope="module")
def served(tmp_path_factory, engine):
    """A vault with a few of Mara's e-mails, served with a queue of one waiting request."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("home")
    mp.setenv("LOCALPERS_HOME", str(home))
    vault = Vault.create("mara", "pw", kdf_seconds=0)
    History(vault).add_texts(TEXTS, kind="email")
    service = Service(vault, Writer(vault, engine=engine), queue_size=1)
    token = "test-token-" + uuid.uuid4().hex
    with LocalServer(create_app(service, token)) as server:
        server.token, server.service, server.vault, server.home = token, service, vault, home
        server.client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
        yield server
        server.client.close()
    vault.close()
    mp.undo()


def wait_idle(served, timeout=60.0):
    """Wait until no generation holds the engine (a previous test's stream may still be closing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.service.engine.lock.acquire(blocking=False):
            served.service.engine.lock.release()
            if not (served.service._turn and served.service._turn.locked()):
                return
        time.sleep(0.02)
    raise AssertionError("the engine stayed busy")


def sse_events(response) -> list:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[6:]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def api_entries(vault):
    return [r for r in vault.ledger.rows(order_by="id") if r["purpose"] == "api request"]


# ---------------------------------------------------------------------- what it serves


def test_models_lists_the_writer_and_the_base_model(served):
    r = served.client.get("/v1/models")
    assert r.status_code == 200
    ids = [m["id"] for m in r.json()["data"]]
    assert ids == ["localpers", "gemma3-270m"]
    assert r.json()["data"][0]["owned_by"] == "mara"


def test_chat_with_the_writer_non_streaming(served):
    wait_idle(served)
    r = served.client.post("/v1/chat/completions", json={
        "model": "localpers", "max_tokens": 12,
        "messages": [{"role": "user", "content": "Tell Sam the meeting room is booked for Tuesday."}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "localpers"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"].strip()
    usage = body["usage"]
    # The prompt carries retrieved examples of Mara's e-mails, so it is far longer than the instruction.
    assert usage["prompt_tokens"] > 60 and 1 <= usage["completion_tokens"] <= 12


def test_streamed_completion_matches_its_usage_and_ends_with_done(served):
    wait_idle(served)
    with served.client.stream("POST", "/v1/completions", json={
            "model": "gemma3-270m", "prompt": "1, 2, 3, 4, 5,", "max_tokens": 10, "stream": True,
            "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    pieces = [e["choices"][0]["text"] for e in events[:-2] if e["choices"]]
    assert len(pieces) >= 3 and "6" in "".join(pieces)
    usage = events[-2]["usage"]
    assert usage["completion_tokens"] == 10 and usage["prompt_tokens"] >= 10
    assert events[-3]["choices"][0]["finish_reason"] == "length"


def test_streamed_chat_with_the_writer(served):
    wait_idle(served)
    with served.client.stream("POST", "/v1/chat/completions", json={
            "model": "localpers", "max_tokens": 10, "stream": True,
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Thank Petra for the coffee."}]}) as r:
        assert r.status_code == 200
        events = sse_events(r)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant" and events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[1:-1])
    assert text.strip()
    assert events[-2]["choices"][0]["finish_reason"] in ("stop", "length")


def test_stop_sequences_and_json_schema(served):
    wait_idle(served)
    r = served.client.post("/v1/completions", json={
        "model": "gemma3-270m", "prompt": "1, 2, 3, 4, 5,", "max_tokens": 20, "stop": [" 8"]})
    text = r.json()["choices"][0]["text"]
    assert "6" in text and "8" not in text and r.json()["choices"][0]["finish_reason"] == "stop"
    schema = {"type": "object", "properties": {"day": {"type": "string", "enum": ["Monday", "Friday"]},
                                               "urgent": {"type": "boolean"}}, "required": ["day", "urgent"]}
    r = served.client.post("/v1/chat/completions", json={
        "model": "localpers", "max_tokens": 40,
        "response_format": {"type": "json_schema", "json_schema": {"name": "plan", "schema": schema}},
        "messages": [{"role": "user", "content": "When does the release happen?"}]})
    answer = json.loads(r.json()["choices"][0]["message"]["content"])
    assert answer["day"] in ("Monday", "Friday") and isinstance(answer["urgent"], bool)


def test_the_official_openai_client_works_against_it(served):
    openai = pytest.importorskip("openai")
    wait_idle(served)
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=served.token, max_retries=0)
    assert {m.id for m in client.models.list()} == {"localpers", "gemma3-270m"}
    chat = client.chat.completions.create(model="localpers", max_tokens=8,
                                          messages=[{"role": "user", "content": "Ask Jonas for the slides."}])
    assert chat.choices[0].message.content.strip() and chat.usage.completion_tokens <= 8
    stream = client.chat.completions.create(model="localpers", max_tokens=8, stream=True,
                                            messages=[{"role": "user", "content": "Ask Jonas for the slides."}])
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed.strip()
    done = client.completions.create(model="gemma3-270m", prompt="Monday, Tuesday,", max_tokens=4)
    assert done.choices[0].text
    bad = openai.OpenAI(base_url=served.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


# ---------------------------------------------------------------------- who may use it


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "bearer test-token-"}])
def test_a_missing_or_wrong_token_gets_401(served, headers):
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/nowhere")):
        r = httpx.request(method, served.url + path, headers=headers, json={"model": "localpers"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "\n" not in r.text.strip() and "token" in r.json()["error"]["message"]


def test_only_loopback_unless_insisted():
    check_host("127.0.0.1")
    check_host("::1")
    check_host("localhost")
    for host in ("0.0.0.0", "192.168.1.20", "::", "example.org"):
        with pytest.raises(ServeError, match="refusing to listen"):
            check_host(host)
    check_host("0.0.0.0", allow_remote=True)
    with pytest.raises(ServeError):
        LocalServer(object(), host="0.0.0.0")
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1 and "refusing to listen on 0.0.0.0" in result.output
    insisted = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--allow-remote", "-u", "nobody"],
                                  env={"LOCALPERS_PASSPHRASE": "x"})
    assert "WARNING: listening on 0.0.0.0" in insisted.output and "NOT encrypted" in insisted.output
    assert insisted.exit_code == 1  # and then: no such vault


def test_a_busy_port_is_a_one_line_error(home):
    import socket

    Vault.create("mara", "pw", kdf_seconds=0).close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "-u", "mara", "--port", str(port)],
                                    env={"LOCALPERS_PASSPHRASE": "pw"})
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output
    Vault.open("mara", "pw").close()  # the vault was locked again


# ---------------------------------------------------------------------- bad input


def test_bad_input_gets_a_one_line_json_error_and_the_server_keeps_serving(served):
    c = served.client
    cases = [
        (c.post("/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}),
         400, "not valid JSON"),
        (c.post("/v1/chat/completions", json=["a", "list"]), 400, "JSON object"),
        (c.post("/v1/chat/completions", json={"model": "localpers", "messages": "hello"}), 400, "'messages'"),
        (c.post("/v1/chat/completions", json={"model": "localpers", "max_tokens": "ten",
                                              "messages": [{"role": "user", "content": "x"}]}), 400, "max_tokens"),
        (c.post("/v1/chat/completions", json={"model": "localpers", "temperature": True,
                                              "messages": [{"role": "user", "content": "x"}]}), 400, "temperature"),
        (c.post("/v1/chat/completions", json={"model": "localpers", "messages": [{"role": "king", "content": 1}]}),
         400, "each message"),
        (c.post("/v1/completions", json={"model": "localpers"}), 400, "'prompt'"),
        (c.post("/v1/completions", json={"prompt": "x"}), 400, "'model'"),
        (c.post("/v1/completions", json={"model": "gpt-4o", "prompt": "x"}), 404, "unknown model"),
        (c.post("/v1/completions", json={"model": "gemma3-270m", "prompt": "x", "response_format": {"type": "x"}}),
         400, "response_format"),
        (c.post("/v1/completions", json={"model": "gemma3-270m", "prompt": "word " * 3000, "max_tokens": 5}),
         400, "context"),
        (c.post("/v1/completions", content=b'{"model": "localpers", "prompt": "' + b"a" * (10 << 20) + b'"}'),
         413, "over"),
        (c.get("/v1/history"), 404, "Not Found"),
        (c.get("/v1/chat/completions"), 405, "Method Not Allowed"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (words, response.text)
        assert response.text.count("\n") <= 1 and "Traceback" not in response.text
        assert words in response.json()["error"]["message"], response.text
    # A 10 MB body sent chunked (no Content-Length) is cut off too.
    big = (b"x" * 65536 for _ in range(160))
    r = c.post("/v1/completions", content=big)
    assert r.status_code == 413
    wait_idle(served)
    ok = c.post("/v1/completions", json={"model": "gemma3-270m", "prompt": "Hello", "max_tokens": 2})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] >= 1


# ---------------------------------------------------------------------- concurrency


def test_a_full_queue_answers_429_and_the_queue_drains(served):
    wait_idle(served)
    c = served.client
    body = {"model": "gemma3-270m", "prompt": "Numbers:", "max_tokens": 200, "response_format": LONG,
            "stream": True}
    results = {}
    with c.stream("POST", "/v1/completions", json=body) as first:
        lines = first.iter_lines()
        next(line for line in lines if line.startswith("data: "))  # it holds the engine now

        def waiting_request():
            results["second"] = httpx.post(served.url + "/v1/completions", json={
                "model": "gemma3-270m", "prompt": "Hi", "max_tokens": 2},
                headers={"Authorization": f"Bearer {served.token}"}, timeout=120)

        thread = threading.Thread(target=waiting_request)
        thread.start()
        deadline = time.monotonic() + 30
        while served.service.waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert served.service.waiting == 1
        third = c.post("/v1/completions", json={"model": "gemma3-270m", "prompt": "Hi", "max_tokens": 2})
        assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
        assert "busy" in third.json()["error"]["message"]
    thread.join(timeout=120)
    assert results["second"].status_code == 200


def test_a_client_that_disconnects_mid_stream_frees_the_engine(served):
    wait_idle(served)
    before = len(api_entries(served.vault))
    body = {"model": "gemma3-270m", "prompt": "Numbers:", "max_tokens": 600, "response_format": LONG,
            "stream": True}
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", served.url + "/v1/completions", json=body,
                           headers={"Authorization": f"Bearer {served.token}"}) as r:
            seen = 0
            for line in r.iter_lines():
                seen += line.startswith("data: ")
                if seen == 5:
                    break
        left = time.monotonic()
    # The closed connection cancels the generation after the token in flight.
    wait_idle(served, timeout=10)
    freed_in = time.monotonic() - left
    entries = api_entries(served.vault)
    assert len(entries) == before + 1
    made = entries[-1]["decision"]["completion_tokens"]
    # At least 120 numbers (about 240 tokens) were forced; a few dozen at most were made.
    assert 5 <= made < 100, made
    assert freed_in < 5, freed_in


# ---------------------------------------------------------------------- what is kept, and where


def test_each_request_is_in_the_ledger_sealed_without_its_text(served):
    wait_idle(served)
    client_name = "Thunderbird-" + uuid.uuid4().hex[:8]
    r = served.client.post("/v1/chat/completions", headers={"X-Client-Name": client_name}, json={
        "model": "localpers", "max_tokens": 6, "messages": [{"role": "user", "content": "Thank Lena."}]})
    assert r.status_code == 200
    entry = api_entries(served.vault)[-1]
    assert entry["recipient"] == client_name and entry["decision"]["label"] == "localpers"
    assert entry["decision"]["prompt_tokens"] == r.json()["usage"]["prompt_tokens"]
    assert entry["decision"]["completion_tokens"] == r.json()["usage"]["completion_tokens"]
    assert entry["decision"]["time"].endswith("Z")
    assert "Thank Lena" not in json.dumps(entry)
    raw = sqlite3.connect(served.vault.path).execute(
        "select time, purpose, recipient, decision from ledger where id = ?", [entry["id"]]).fetchone()
    assert raw[0] % 86400 == 0  # only the day is clear
    assert all(isinstance(col, bytes) and client_name.encode() not in col for col in raw[1:])


def test_no_prompt_or_completion_reaches_a_file(served, tmp_path):
    wait_idle(served)
    tag = uuid.uuid4().hex[:8]
    prompt, answer, client_name = f"CANARY-prompt-{tag}", f"CANARY{tag}", f"CANARY-client-{tag}"
    started = time.time() - 1
    # The schema forces the model to write the answer canary: a completion we can look for.
    forced = {"type": "json_schema", "json_schema": {"name": "c", "schema": {"const": answer}}}
    for model, path, body, stream in (
            ("localpers", "/v1/chat/completions", {"messages": [{"role": "user", "content": f"Tell Sam {prompt}"}]},
             False),
            ("gemma3-270m", "/v1/completions", {"prompt": f"Note: {prompt}"}, True)):
        r = served.client.post(path, headers={"X-Client-Name": client_name}, json={
            "model": model, "max_tokens": 30, "response_format": forced, "stream": stream, **body})
        assert r.status_code == 200
        if stream:
            text = "".join(json.loads(line[6:])["choices"][0]["text"] for line in r.text.splitlines()
                           if line.startswith("data: {"))
        else:
            text = r.json()["choices"][0]["message"]["content"]
        assert answer in text
    needles = {"prompt": encodings(prompt), "answer": encodings(answer), "client": encodings(client_name)}
    import tempfile

    roots = [served.home, Path(tempfile.gettempdir()), Path.cwd()]
    assert scan(roots, needles, since=started) == []
    # Positive control: the scanner sees the canary where it is written in clear.
    (tmp_path / "control").write_text(answer)
    assert scan([tmp_path], needles) == [f"{tmp_path / 'control'}: answer"]


# ---------------------------------------------------------------------- the command


def test_serve_command_token_file_and_stop_locks_the_vault(home):
    Vault.create("mara", "pw", kdf_seconds=0).close()
    Config(threads=1).save()
    port = free_port()
    env = {**os.environ, "LOCALPERS_PASSPHRASE": "pw", "LOCALPERS_HOME": str(home)}
    cli = [str(Path(sys.executable).parent / "localpers")]
    proc = subprocess.Popen([*cli, "serve", "-u", "mara", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    token_file = home / "users" / "mara" / "serve.token"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5,
                              headers={"Authorization": f"Bearer {token_file.read_text().strip()}"})
                break
            except (OSError, httpx.HTTPError):
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["data"][0]["id"] == "localpers"
        assert token_file.stat().st_mode & 0o777 == 0o600
        with Vault.open("mara", "pw") as beside:  # the server has it open; other commands still can (writes queue)
            assert beside.is_open
        if importlib.util.find_spec("llm") is not None:  # the llm plugin then writes through the server
            via_llm = subprocess.run([sys.executable, "-m", "llm", "-n", "-m", "localpers", "Thank Sam",
                                      "-o", "max_tokens", "3"], env={**env, "LLM_USER_PATH": str(home / "llm")},
                                     capture_output=True, text=True, timeout=300)
            assert via_llm.returncode == 0 and via_llm.stdout.strip(), via_llm.stderr
        stopped = subprocess.run([*cli, "serve", "-u", "mara", "--stop"], env=env, capture_output=True, text=True,
                                 timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    token = r.request.headers["authorization"].split()[1]
    assert out.count(token) == 1  # printed once
    assert not token_file.exists() and not (home / "users" / "mara" / "serve.json").exists()
    Vault.open("mara", "pw").close()  # locked again, and openable by the next process
    again = subprocess.run([*cli, "serve", "-u", "mara", "--stop"], env=env, capture_output=True, text=True)
    assert again.returncode == 1 and "no server is running" in again.stderr
