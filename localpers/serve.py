"""The loopback API: your writer for every local app, over an OpenAI-compatible HTTP API.

Mail clients, editors and shell tools talk to local models the way they talk to
OpenAI. :func:`create_app` gives them the user's writer (the base model with their
personal adapter, and examples retrieved from their history) and the plain base
model, under these routes:

- ``GET /v1/models``: ``localpers`` (the writer) and the base model (e.g. ``gemma3-270m``);
- ``POST /v1/chat/completions``: with ``localpers``, the last user message is the
  instruction and the writer composes a text in the user's voice;
- ``POST /v1/completions``: with ``localpers``, the prompt is a draft the writer continues.

Both take ``max_tokens``, ``temperature``, ``stop``, ``stream`` (server-sent events) and
``response_format`` (``json_object`` or ``json_schema``). Nothing lists, searches or
exports the history: the API writes, it does not reveal.

Security model
--------------
- It listens on the loopback interface only (:func:`check_host` refuses any other
  address unless the person starting it insists).
- Every request needs ``Authorization: Bearer <token>``; the token is random, made at
  start, kept in a 0600 file next to the vault and gone when the server stops. No CORS
  headers are sent, so a web page cannot read an answer.
- The vault stays unlocked while the server runs; stopping the server locks it.
- Each request goes to the vault's ledger, sealed: the exact time, the client's name,
  the model and the token counts. No prompt or completion is written anywhere.

Concurrency: one generation at a time (one engine); up to ``queue_size`` requests wait
their turn, more get ``429`` with ``Retry-After``. A client that disconnects mid-stream
frees the engine after the token being generated.

Example::

    >>> from localpers.serve import Service, create_app, LocalServer
    >>> service = Service(vault)                                  # doctest: +SKIP
    >>> with LocalServer(create_app(service, token="s3cret")) as server:  # doctest: +SKIP
    ...     print(server.url)
    http://127.0.0.1:40123
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import itertools
import json
import os
import secrets
import signal
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import models
from .errors import LocalpersError
from .vault import coarse_time
from .writing.writer import Writer

if TYPE_CHECKING:
    from .vault import Vault

WRITER_MODEL = "localpers"
DEFAULT_PORT = 8723
MAX_BODY = 1 << 20  # 1 MiB: far more than any prompt that fits the model's context
DEFAULT_QUEUE = 4
DEFAULT_MAX_TOKENS = 300
TOKEN_FILE = "serve.token"
STATE_FILE = "serve.json"


class ServeError(LocalpersError):
    """The server cannot start or stop as asked."""


class BadRequest(Exception):
    """A request the API refuses: becomes a 4xx answer with a one-line JSON error."""

    def __init__(self, status: int, message: str, code: str = "invalid_request", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def error_response(status: int, message: str, code: str, headers: dict | None = None) -> JSONResponse:
    """The OpenAI error shape, on one line: ``{"error": {"message", "type", "code"}}``."""
    kind = "authentication_error" if status == 401 else "rate_limit_error" if status == 429 \
        else "server_error" if status >= 500 else "invalid_request_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status,
                        headers=headers)


# ---------------------------------------------------------------------- requests


@dataclass
class Job:
    """One generation request, validated."""

    endpoint: str  # "chat" or "completion"
    model: str
    stream: bool
    max_tokens: int
    temperature: float
    stop: list[str]
    schema: dict | None
    client: str
    messages: list[dict[str, str]] = field(default_factory=list)
    prompt: str = ""
    include_usage: bool = False


def _field(body: dict, name: str, types: type | tuple, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    # bool is an int in Python; a JSON true is never a valid number here
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise BadRequest(400, f"'{name}' must be a number, not a boolean", "invalid_type")
    if not isinstance(value, types):
        want = "a string" if types is str else "a number" if types in ((int, float), int, float) \
            else "a list" if types is list else "an object" if types is dict else "a boolean"
        raise BadRequest(400, f"'{name}' must be {want}", "invalid_type")
    return value


def parse_job(body: Any, endpoint: str, client: str) -> Job:
    """Check a request body and turn it into a :class:`Job`; :class:`BadRequest` names the problem."""
    if not isinstance(body, dict):
        raise BadRequest(400, "the request body must be a JSON object", "invalid_json")
    model = _field(body, "model", str)
    if not model:
        raise BadRequest(400, "'model' is required: use 'localpers' (your writer) or the base model", "missing_model")
    max_tokens = _field(body, "max_completion_tokens", int, None)
    max_tokens = _field(body, "max_tokens", int, max_tokens or DEFAULT_MAX_TOKENS)
    if max_tokens < 1:
        raise BadRequest(400, "'max_tokens' must be at least 1", "invalid_value")
    temperature = float(_field(body, "temperature", (int, float), 0.0))
    if not 0 <= temperature <= 2:
        raise BadRequest(400, "'temperature' must be between 0 and 2", "invalid_value")
    stop = _field(body, "stop", (str, list), [])
    stop = [stop] if isinstance(stop, str) else stop
    if len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest(400, "'stop' must be a string or a list of up to 4 non-empty strings", "invalid_value")
    stream = _field(body, "stream", bool, False)
    options = _field(body, "stream_options", dict, {})
    job = Job(endpoint, model, stream, max_tokens, temperature, stop, _schema(body), client,
              include_usage=bool(options.get("include_usage")))
    if endpoint == "chat":
        messages = _field(body, "messages", list)
        if not messages:
            raise BadRequest(400, "'messages' is required: a list of {role, content} objects", "missing_messages")
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                    or not isinstance(m.get("content"), str):
                raise BadRequest(400, "each message must be {\"role\": \"system\"|\"user\"|\"assistant\", "
                                      "\"content\": a string}", "invalid_messages")
        job.messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    else:
        prompt = _field(body, "prompt", (str, list))
        if isinstance(prompt, list):  # the OpenAI API allows a batch; one engine serves one at a time
            if len(prompt) != 1 or not isinstance(prompt[0], str):
                raise BadRequest(400, "'prompt' must be one string (batches are not served)", "invalid_type")
            prompt = prompt[0]
        if prompt is None:
            raise BadRequest(400, "'prompt' is required", "missing_prompt")
        job.prompt = prompt
    return job


def _schema(body: dict) -> dict | None:
    """The JSON schema asked for by ``response_format``, if any."""
    fmt = _field(body, "response_format", dict)
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "object"}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            return schema
    raise BadRequest(400, "'response_format' must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                          "{\"type\": \"json_schema\", \"json_schema\": {\"schema\": {...}}}", "invalid_response_format")


# ---------------------------------------------------------------------- the service


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    prompt: str = field(default="", repr=False)  # kept in memory until counted, never stored


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        self.retry_after = retry_after


class Generation:
    """A generation running in its own thread; iterate it (async) for text pieces.

    The engine's lock belongs to the thread that takes it, so the whole generation,
    from building the prompt to the last token, runs in one thread; pieces reach the
    event loop through a queue. :meth:`cancel` stops it after the current token.
    """

    def __init__(self, service: "Service", job: Job) -> None:
        self.service, self.job = service, job
        self.usage = Usage()
        self.text = ""
        self._cancel = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._thread = threading.Thread(target=self._work, name="localpers-generate", daemon=True)

    async def start(self) -> None:
        """Build the prompt (retrieval included); raise :class:`BadRequest` if it cannot be built."""
        self._thread.start()
        kind, value = await self._queue.get()
        if kind == "error":
            raise value

    def _put(self, kind: str, value: Any = None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the server is shutting down
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))

    def _work(self) -> None:
        started = time.monotonic()
        pieces = None
        try:
            try:
                pieces = self.service.pieces(self.job, self.usage)
                next(pieces)  # builds the prompt (see Service.pieces)
                # The first token too: the engine checks the prompt's length then, and a prompt
                # too long must still be a 400, before any streamed answer has begun.
                first = next(pieces, None)
            except LocalpersError as exc:
                self._put("error", BadRequest(400, str(exc).splitlines()[0], "invalid_request"))
                return
            except Exception as exc:  # an unexpected failure: say what it was, never the prompt
                self._put("error", BadRequest(500, f"generation failed: {type(exc).__name__}", "server_error"))
                return
            self._put("ready")
            try:
                for piece in itertools.chain([first] if first else [], pieces):
                    if self._cancel.is_set():
                        break
                    self.text += piece
                    self._put("piece", piece)
            except Exception as exc:
                self._put("failed", f"generation failed: {type(exc).__name__}")
        finally:
            if pieces is not None:
                pieces.close()  # closes the engine's stream here, in the thread that holds its lock
            if self.usage.prompt:
                self.usage.prompt_tokens, self.usage.prompt = self.service.count_tokens(self.usage.prompt), ""
            if self.text:
                self.usage.completion_tokens = self.service.count_tokens(self.text)
            if self.usage.completion_tokens >= self.job.max_tokens:
                self.usage.finish_reason = "length"
            self.service.record(self.job, self.usage)
            self.service.finished(time.monotonic() - started)
            self._put("end")

    def cancel(self) -> None:
        self._cancel.set()

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            while True:
                kind, value = await self._queue.get()
                if kind == "piece":
                    yield value
                elif kind == "failed":
                    raise RuntimeError(value)
                else:
                    return
        finally:
            self._cancel.set()  # the client left (or the answer is done): free the engine now


class Service:
    """The user's writer and the base model behind one engine, one request at a time.

    ``writer`` defaults to a :class:`~localpers.writing.writer.Writer` for ``vault`` (personal
    adapter and retrieval on). ``queue_size`` requests may wait while one runs.
    """

    def __init__(self, vault: Vault, writer: Any = None, *, queue_size: int = DEFAULT_QUEUE) -> None:
        if writer is None:
            writer = Writer(vault)
        self.vault, self.writer, self.engine = vault, writer, writer.engine
        self.base_model = _model_name(self.engine.model_path)
        self.queue_size = queue_size
        self.waiting = 0
        self._turn: asyncio.Lock | None = None
        self._seconds = 2.0  # a running estimate of one request's duration, for Retry-After
        self._record_lock = threading.Lock()

    # ------------------------------------------------------------------ models

    def models(self) -> list[dict]:
        created = int(time.time())
        return [
            {"id": WRITER_MODEL, "object": "model", "created": created, "owned_by": self.vault.user,
             "description": f"{self.base_model} writing in {self.vault.user}'s voice "
                            f"({'personal adapter' if self.writer.adapter else 'no adapter yet'}, "
                            "examples from their history)"},
            {"id": self.base_model, "object": "model", "created": created, "owned_by": "localpers",
             "description": "the base model, without anything personal"},
        ]

    def check_model(self, name: str) -> None:
        if name not in (WRITER_MODEL, self.base_model):
            raise BadRequest(404, f"unknown model {name!r}; available: {WRITER_MODEL}, {self.base_model}",
                             "model_not_found")

    # ------------------------------------------------------------------ one turn at a time

    async def generate(self, job: Job) -> Generation:
        """Wait for the engine (or raise :class:`QueueFull`), then start ``job``."""
        if self._turn is None:
            self._turn = asyncio.Lock()
        if self._turn.locked() and self.waiting >= self.queue_size:
            raise QueueFull(max(1, round(self._seconds * (self.waiting + 1))))
        self.waiting += 1
        try:
            await self._turn.acquire()
        finally:
            self.waiting -= 1
        loop = asyncio.get_running_loop()
        self._release = lambda: loop.call_soon_threadsafe(self._turn.release)
        try:
            generation = Generation(self, job)
        except BaseException:
            self._turn.release()
            raise
        try:
            await generation.start()
        except BaseException:
            generation.cancel()  # the client left while the prompt was being built
            raise
        return generation

    def finished(self, seconds: float) -> None:
        """Called by the generation thread as it ends: the next request may start."""
        self._seconds = 0.7 * self._seconds + 0.3 * seconds
        self._release()

    # ------------------------------------------------------------------ in the generation thread

    def pieces(self, job: Job, usage: Usage) -> Iterator[str]:
        """Yield ``""`` once the prompt is built (errors surface before), then the text pieces."""
        options = dict(max_tokens=job.max_tokens, temperature=job.temperature, stop=job.stop or None,
                       schema=job.schema)
        draft = None
        if job.model == WRITER_MODEL:
            if job.endpoint == "chat":
                users = [m["content"] for m in job.messages if m["role"] == "user"]
                if not users:
                    raise LocalpersError("the writer needs a user message saying what to write")
                draft = self.writer.compose(users[-1], **options)
            else:
                draft = self.writer.write("continue", context=job.prompt, **options)
            prompt, stream = draft.prompt, iter(draft)
        else:
            prompt = self.engine.chat_prompt(job.messages) if job.endpoint == "chat" else job.prompt
            stream = self.engine.stream(prompt, **options)
        usage.prompt = prompt  # counted after the answer, so counting never delays the first token
        yield ""
        try:
            yield from stream
        finally:
            if draft is not None:
                draft.close()
            else:
                stream.close()

    def count_tokens(self, text: str) -> int:
        return len(self.engine.tokenize(text, add_bos=False))

    def record(self, job: Job, usage: Usage) -> None:
        """One sealed ledger entry per request: time, client, model, token counts; never the text."""
        row = {"time": coarse_time(), "purpose": "api request", "recipient": job.client or "unnamed client",
               "revealed": {}, "withheld": [], "steps": [],
               "decision": {"name": "api request", "label": job.model, "endpoint": job.endpoint,
                            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                            "finish_reason": usage.finish_reason}}
        with self._record_lock, contextlib.suppress(LocalpersError):  # a closing vault must not crash the reply
            self.vault.ledger.insert(row)


def _model_name(path: Path) -> str:
    """The registry name of the model at ``path`` (``gemma3-270m``), else the file's stem."""
    for name in (n for n, spec in models.REGISTRY.items() if spec.role == "writer"):
        with contextlib.suppress(LocalpersError):
            if models.ensure(name) == Path(path):
                return name
    return Path(path).stem.lower()


# ---------------------------------------------------------------------- the HTTP app


def create_app(service: Service, token: str) -> Starlette:
    """The ASGI app: bearer-token checks, the three routes, and one-line JSON errors."""
    expected = token.encode()

    def client_name(request: Request, body: dict | None = None) -> str:
        name = (body or {}).get("user") if isinstance(body, dict) else None
        name = name if isinstance(name, str) and name else request.headers.get("x-client-name") \
            or request.headers.get("user-agent", "")
        return " ".join(name.split())[:60]

    async def read_json(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY:
            raise BadRequest(413, f"the request body is over {MAX_BODY // 1024} KiB", "body_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise BadRequest(413, f"the request body is over {MAX_BODY // 1024} KiB", "body_too_large")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(400, "the request body is not valid JSON", "invalid_json") from None

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": service.models()})

    async def completions(request: Request, endpoint: str) -> Response:
        body = await read_json(request)
        job = parse_job(body, endpoint, client_name(request, body))
        service.check_model(job.model)
        try:
            generation = await service.generate(job)
        except QueueFull as full:
            raise BadRequest(429, "the writer is busy: too many requests are waiting; retry shortly",
                             "queue_full", {"Retry-After": str(full.retry_after)}) from None
        ident = ("chatcmpl-" if endpoint == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        shape = _Shape(ident, job, int(time.time()))
        if job.stream:
            return StreamingResponse(_sse(generation, shape), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store"})
        try:
            async for _ in generation:
                pass
        except RuntimeError as exc:
            raise BadRequest(500, str(exc), "server_error") from None
        return JSONResponse(shape.whole(generation.text, generation.usage), headers={"Cache-Control": "no-store"})

    async def chat(request: Request) -> Response:
        return await completions(request, "chat")

    async def complete(request: Request) -> Response:
        return await completions(request, "completion")

    app = Starlette(routes=[
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", complete, methods=["POST"]),
    ])

    async def guard(scope: dict, receive: Any, send: Any) -> None:
        """Check the token before anything else; turn every refusal into one-line JSON."""
        if scope["type"] != "http":
            return await app(scope, receive, send)
        request = Request(scope, receive)
        header = request.headers.get("authorization", "")
        given = header[7:].strip().encode() if header[:7].lower() == "bearer " else b""
        if not hmac.compare_digest(given, expected):
            response: Response = error_response(401, "missing or wrong bearer token: send 'Authorization: Bearer "
                                                     "<token>' with the token `localpers serve` printed",
                                                "invalid_token", {"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        try:
            await app(scope, receive, send)
        except BadRequest as exc:
            await error_response(exc.status, exc.message, exc.code, exc.headers)(scope, receive, send)

    # Starlette's own 404/405 pages are plain text; make them JSON like every other error.
    from starlette.exceptions import HTTPException

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error_response(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", "not_found"
                              if exc.status_code == 404 else "method_not_allowed")

    async def bad_request(request: Request, exc: BadRequest) -> Response:
        return error_response(exc.status, exc.message, exc.code, exc.headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        return error_response(500, f"the server failed ({type(exc).__name__}); it keeps serving", "server_error")

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(BadRequest, bad_request)
    app.add_exception_handler(Exception, unexpected)
    return guard  # type: ignore[return-value]


@dataclass
class _Shape:
    """OpenAI's response shapes for one request."""

    ident: str
    job: Job
    created: int

    def _head(self, obj: str) -> dict:
        return {"id": self.ident, "object": obj, "created": self.created, "model": self.job.model}

    @staticmethod
    def _usage(usage: Usage) -> dict:
        return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.prompt_tokens + usage.completion_tokens}

    def whole(self, text: str, usage: Usage) -> dict:
        if self.job.endpoint == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "finish_reason": usage.finish_reason}
            return {**self._head("chat.completion"), "choices": [choice], "usage": self._usage(usage)}
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": usage.finish_reason}
        return {**self._head("text_completion"), "choices": [choice], "usage": self._usage(usage)}

    def chunk(self, piece: str | None, finish: str | None = None, *, first: bool = False) -> dict:
        if self.job.endpoint == "chat":
            delta = {"role": "assistant", "content": ""} if first else {} if piece is None else {"content": piece}
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {**self._head("chat.completion.chunk"), "choices": [choice]}
        choice = {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish}
        return {**self._head("text_completion"), "choices": [choice]}


def _event(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


async def _sse(generation: Generation, shape: _Shape) -> AsyncIterator[str]:
    if shape.job.endpoint == "chat":
        yield _event(shape.chunk(None, first=True))
    try:
        async for piece in generation:
            yield _event(shape.chunk(piece))
    except RuntimeError as exc:
        yield _event({"error": {"message": str(exc), "type": "server_error", "code": "server_error"}})
        return
    final = shape.chunk(None, generation.usage.finish_reason)
    yield _event(final)
    if shape.job.include_usage:
        yield _event({**shape._head(final["object"]), "choices": [], "usage": shape._usage(generation.usage)})
    yield _event("[DONE]")


# ---------------------------------------------------------------------- running it


def check_host(host: str, *, allow_remote: bool = False) -> None:
    """Refuse any address but loopback unless ``allow_remote``.

    >>> check_host("127.0.0.1")
    >>> check_host("0.0.0.0")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    localpers.serve.ServeError: refusing to listen on 0.0.0.0: ...
    """
    if host == "localhost" or _is_loopback(host) or allow_remote:
        return
    raise ServeError(f"refusing to listen on {host}: only loopback (127.0.0.1, ::1) keeps your writer on this "
                     "machine; pass --allow-remote only if you know who else can reach this address")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free on ``host`` now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a fresh 0600 file (an old one is replaced, never reused with its mode)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def state_paths(user_dir: Path) -> tuple[Path, Path]:
    """``(token file, state file)`` of a server for the vault in ``user_dir``."""
    return user_dir / TOKEN_FILE, user_dir / STATE_FILE


def running_server(user_dir: Path) -> dict | None:
    """``{"url", "pid", "token"}`` of the server running for this vault, or None (stale files are removed)."""
    token_file, state_file = state_paths(user_dir)
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        token = token_file.read_text(encoding="utf-8").strip()
        proc = psutil.Process(int(state["pid"]))
        alive = proc.is_running() and "serve" in " ".join(proc.cmdline())
    except (OSError, ValueError, KeyError, psutil.Error):
        alive, state, token = False, {}, ""
    if not alive:
        for path in (token_file, state_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return None
    return {**state, "token": token}


def stop_server(user_dir: Path, *, timeout: float = 20.0) -> bool:
    """Ask the server running for this vault to stop (and so lock it). False if none runs."""
    state = running_server(user_dir)
    if state is None:
        return False
    pid = int(state["pid"])
    process = psutil.Process(pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:  # exited; its parent has not collected it yet
                break
        except psutil.NoSuchProcess:
            break
        if time.monotonic() > deadline:
            raise ServeError(f"the server (pid {pid}) did not stop within {timeout:.0f} s; stop it with Ctrl+C")
        time.sleep(0.1)
    running_server(user_dir)  # removes what a killed server may have left
    return True


class LocalServer:
    """Run an ASGI app with uvicorn in a background thread (tests, benchmarks, embedding apps).

    >>> with LocalServer(app) as server:   # doctest: +SKIP
    ...     httpx.get(server.url + "/v1/models")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None) -> None:
        check_host(host)
        self.host, self.port = host, port or free_port(host)
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="localpers-serve", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> "LocalServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ServeError(f"the server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class _Server(uvicorn.Server):
    """uvicorn's server, except that Ctrl+C or SIGTERM ends :meth:`run` normally.

    uvicorn re-raises the signal after shutting down, which would kill the process
    before :func:`serve` locks the vault and removes the token file.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(vault: Vault, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, allow_remote: bool = False,
          queue_size: int = DEFAULT_QUEUE, announce: Any = print) -> None:
    """Serve ``vault``'s writer until Ctrl+C or ``localpers serve --stop``; then lock the vault.

    ``announce`` receives the lines for the person who started it (the token among them).
    """
    check_host(host, allow_remote=allow_remote)
    user_dir = vault.path.parent
    if running_server(user_dir) is not None:
        raise ServeError(f"a server for {vault.user!r} is already running; stop it with `localpers serve --stop`")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another port with --port") \
                from None
    token = new_token()
    service = Service(vault, queue_size=queue_size)
    config = uvicorn.Config(create_app(service, token), host=host, port=port, log_level="warning",
                            access_log=False, lifespan="off", timeout_graceful_shutdown=5)
    server = _Server(config)
    token_file, state_file = state_paths(user_dir)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/v1"
    try:
        _write_private(token_file, token + "\n")
        _write_private(state_file, json.dumps({"url": url, "pid": os.getpid(), "user": vault.user}) + "\n")
        announce(f"Serving {vault.user}'s writer at {url} (models: {WRITER_MODEL}, {service.base_model}).")
        announce(f"Token (shown once; also in {token_file}, readable only by you): {token}")
        if writer_notice := service.writer.notice:
            announce(writer_notice)
        announce("Ctrl+C or `localpers serve --stop` stops the server and locks the vault.")
        server.run()
    finally:
        for path in (token_file, state_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        vault.close()
