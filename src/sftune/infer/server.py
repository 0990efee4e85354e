"""``sftune serve``: an OpenAI-compatible HTTP API over one local model.

Endpoints: ``POST /v1/chat/completions`` (plain JSON, or server-sent events with
``"stream": true``) and ``GET /v1/models``. Any OpenAI client works against it::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused-or-your-key")
    client.chat.completions.create(model="my-model", messages=[{"role": "user", "content": "Hi"}])

One model, one worker thread: requests queue up and are generated one at a time, so
concurrent requests never share a KV cache, a random generator or half a batch. Errors use
OpenAI's shape ``{"error": {"message", "type", "param", "code"}}`` so clients raise their
usual exceptions (``openai.AuthenticationError``, ``openai.BadRequestError``).

Honoured: ``messages`` (system/developer/user/assistant; text or text parts), ``max_tokens`` /
``max_completion_tokens``, ``stream`` and ``stream_options.include_usage``, and every sampling
field of :class:`~sftune.options.SamplingOptions`, which validates them: ``temperature`` (0 =
greedy), ``top_p``, ``top_k``, ``frequency_penalty``, ``presence_penalty``, ``logit_bias``
(token ids of this model), ``stop``, ``seed`` and ``n`` (several choices, generated one after
the other; with a seed, choice i uses seed + i). Tool calling: ``tools``, ``tool_choice``
(``auto``, ``none``, ``required``, a named function), ``tool`` messages and assistant
``tool_calls`` reach the chat template as training rendered them; replies are read back into
``message.tool_calls`` (ids, JSON-string arguments, ``finish_reason: "tool_calls"``) and
``message.reasoning_content``, streamed as deltas too, in the format the template writes
(:mod:`sftune.infer.toolformat`: built in, detected, or declared in the training config).
logprobs are not supported (unknown fields are ignored, as OpenAI-compatible servers commonly do).
"""

from __future__ import annotations

import copy
import hmac
import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

from fastapi import Request  # module level: FastAPI resolves the (string) annotations from these globals
from pydantic import BaseModel, ConfigDict, Field

from ..errors import SftuneError

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS_LIMIT = 2048


# ---- request schema (unknown fields such as "user" or "logprobs" are accepted and ignored) --------
class ContentPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    # Other keys (reasoning_content, ...) pass through to the template, as training hands them.
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The request body. Sampling fields are only typed here; :meth:`sampling` validates them."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    """Accepted and echoed; the server has one model whatever the name says."""
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    tools: list[dict] | None = None
    tool_choice: str | dict | None = None

    def sampling(self, default_max_tokens: int):
        """The request's :class:`SamplingOptions`; a bad value raises ConfigError naming the field."""
        from ..options import SamplingOptions

        return SamplingOptions(
            max_new_tokens=next((v for v in (self.max_completion_tokens, self.max_tokens) if v is not None), default_max_tokens),
            temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, num_return_sequences=self.n,
            frequency_penalty=self.frequency_penalty or 0.0, presence_penalty=self.presence_penalty or 0.0,
            logit_bias=self.logit_bias, seed=self.seed, stop=self.stop,
        )


class APIError(SftuneError):
    """An error answered as OpenAI-style JSON with ``status``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# ---- the generation worker ------------------------------------------------------------------------
@dataclass
class _Job:
    prompt_ids: list[int]
    options: object  # SamplingOptions
    new_parser: object = None  # () -> ToolCallParser reading one choice's reply (calls, reasoning, content)
    # ("text", choice, str) ... ("done", choice, dict) per choice, then ("end", None, None); or ("error", None, exc)
    events: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)


class Worker:
    """Runs generation jobs one at a time on a single thread (the model is not thread-safe)."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.jobs: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="sftune-generate", daemon=True)
        self.thread.start()

    def submit(self, job: _Job) -> _Job:
        self.jobs.put(job)
        return job

    def _loop(self) -> None:
        from .generate import stream_generate

        while True:
            job = self.jobs.get()
            if job is None:
                return
            if job.cancelled.is_set():
                continue  # the client went away while queued
            opts = job.options
            args = opts.generation_args()
            args["num_return_sequences"] = 1  # n choices are n runs of the one-sequence streaming path
            try:
                for i in range(opts.num_return_sequences):
                    if job.cancelled.is_set():
                        break
                    out = stream_generate(
                        self.model, self.tokenizer, job.prompt_ids,
                        on_text=lambda t, q=job.events, i=i: q.put(("text", i, t)),
                        stop=opts.stop or (), seed=None if opts.seed is None else opts.seed + i,
                        should_cancel=job.cancelled.is_set, **args,
                    )
                    job.events.put(("done", i, out))
                job.events.put(("end", None, None))
            except Exception as e:  # reported to that request; the worker keeps serving
                log.exception("generation failed")
                job.events.put(("error", None, e))

    def close(self) -> None:
        self.jobs.put(None)


def _iter_job(job: _Job):
    """Yield ("text", choice, delta) and ("done", choice, result) events; raise a generation error."""
    while True:
        kind, choice, value = job.events.get()
        if kind == "error":
            raise APIError(500, f"generation failed: {type(value).__name__}: {value}", type="server_error")
        if kind == "end":
            return
        yield kind, choice, value


# ---- the app -----------------------------------------------------------------------------------
def create_app(
    model,
    tokenizer,
    *,
    model_name: str,
    api_key: str | None = None,
    max_prompt_tokens: int | None = None,
    max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT,
    default_max_tokens: int | None = None,
    tool_format=None,
    template_kwargs: dict | None = None,
):
    """A FastAPI app answering OpenAI chat-completion requests with ``model``.

    ``max_prompt_tokens`` defaults to the model's context length minus ``max_tokens_limit``
    (so any accepted request fits); ``max_tokens`` above ``max_tokens_limit`` is a 400.
    With ``api_key`` every request needs ``Authorization: Bearer <api_key>``. ``tool_format``
    (a name, a declared format, or ``None`` to detect it from the template) says how replies
    write tool calls and reasoning; ``template_kwargs`` are the template variables training used.
    """
    from fastapi import Depends, FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    if getattr(tokenizer, "chat_template", None) is None:
        from ..model.loading import ModelLoadError

        raise ModelLoadError(f"{model_name}: the tokenizer has no chat template, so chat requests cannot be rendered\n"
                             "  fix: serve a chat model, or a folder written by `sftune train` (it saves the template)")
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if max_prompt_tokens is None:
        max_prompt_tokens = max(context - max_tokens_limit, context // 2) if context else 8192
    default_max_tokens = default_max_tokens or min(512, max_tokens_limit)
    from .toolformat import resolve_format

    fmt = resolve_format(tool_format, tokenizer.chat_template)
    template_kwargs = dict(template_kwargs or {})
    worker = Worker(model, tokenizer)
    created = int(time.time())

    app = FastAPI(title="sftune", description=f"OpenAI-compatible chat completions for {model_name}")
    app.state.worker = worker

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        msg = f"{param}: {first.get('msg', 'invalid request')}" if param else first.get("msg", "invalid request")
        if len(errs) > 1:
            msg += f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})"
        return JSONResponse(APIError(400, msg, param=param, code=first.get("type")).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(APIError(exc.status_code, str(exc.detail), type=kind).body(), status_code=exc.status_code)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
            raise APIError(401, "missing or incorrect API key: send the header 'Authorization: Bearer <key>' with the key given to --api-key",
                           code="invalid_api_key")

    @app.get("/v1/models", dependencies=[Depends(check_key)])
    def list_models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": created, "owned_by": "sftune"}]}

    @app.post("/v1/chat/completions", dependencies=[Depends(check_key)])
    def chat_completions(req: ChatRequest):
        # A sync endpoint: FastAPI runs it in its thread pool, so waiting for the worker blocks no event loop.
        job = _make_job(req)
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not req.stream:
            worker.submit(job)
            outs = [v for k, _, v in _iter_job(job) if k == "done"]
            return {
                "id": rid, "object": "chat.completion", "created": now, "model": model_name,
                "choices": [_choice(job, i, out) for i, out in enumerate(outs)],
                "usage": _usage(outs),
            }
        worker.submit(job)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(_sse(job, rid, now, include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def _choice(job: _Job, i: int, out: dict) -> dict:
        parser = job.new_parser()
        parser.feed(out["text"])
        parser.finish()
        parsed = parser.result()
        for problem in parsed.problems:
            log.warning("choice %d: %s", i, problem)
        return {"index": i, "message": parsed.message(), "finish_reason": parsed.finish_reason(out["finish_reason"]), "logprobs": None}

    def _make_job(req: ChatRequest) -> _Job:
        from ..errors import ConfigError
        from .generate import vocab_size
        from .toolrequest import ToolRequestError, prepare_tool_request, start_reply

        try:
            opts = req.sampling(default_max_tokens)
            opts.check_vocab(vocab_size(model, tokenizer))
        except ConfigError as e:
            param = e.field.split(".")[0] if e.field else None
            if param == "max_new_tokens":
                param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
            elif param == "num_return_sequences":
                param = "n"
            raise APIError(400, str(e).split("\n", 1)[-1].strip(), param=param) from None
        if opts.max_new_tokens > max_tokens_limit:
            param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
            raise APIError(400, f"{param} is {opts.max_new_tokens}, above this server's limit of {max_tokens_limit} (sftune serve --max-tokens-limit)",
                           param=param, code="max_tokens_too_large")
        # Messages, tools and tool_choice reach the template as training rendered them (arguments
        # as objects, keys the request lacks absent); a forced call (required / a named function)
        # starts the reply with the template's own call layout.
        messages = [m.model_dump(exclude_unset=True) for m in req.messages]
        try:
            treq = prepare_tool_request(messages, req.tools, req.tool_choice, fmt)
            prompt, parser = start_reply(tokenizer, treq, **template_kwargs)
        except ToolRequestError as e:
            raise APIError(400, str(e), param=e.param) from None
        except Exception as e:  # templates raise on orders they do not support (e.g. two user turns in a row)
            raise APIError(400, f"the model's chat template rejected these messages: {e}", param="messages") from None
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]  # the template wrote the special tokens
        if len(ids) > max_prompt_tokens:
            raise APIError(400, f"the prompt is {len(ids)} tokens, above this server's limit of {max_prompt_tokens} (sftune serve --max-prompt-tokens)",
                           param="messages", code="context_length_exceeded")
        # Each choice reads its reply with a fresh copy of the parser start_reply set up (forced
        # prefix already fed), so the prompt is rendered once per request, not once per choice.
        return _Job(prompt_ids=ids, options=opts, new_parser=lambda: copy.deepcopy(parser))

    def _usage(outs: list[dict]) -> dict:
        # The prompt is read once per request; every choice's tokens count as completion.
        prompt, completion = outs[0]["prompt_tokens"] if outs else 0, sum(o["completion_tokens"] for o in outs)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _sse(job: _Job, rid: str, now: int, include_usage: bool):
        def chunk(delta: dict, finish=None, usage=None, choices=True, index=0) -> str:
            body = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": model_name,
                    "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}] if choices else []}
            if usage is not None:
                body["usage"] = usage
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        try:
            done = []
            parsers = [job.new_parser() for _ in range(job.options.num_return_sequences)]
            for i in range(job.options.num_return_sequences):
                yield chunk({"role": "assistant", "content": ""}, index=i)
            for kind, i, value in _iter_job(job):
                if kind == "text":  # content, reasoning_content and complete tool calls as they are read
                    for delta in parsers[i].feed(value):
                        yield chunk(delta, index=i)
                else:
                    done.append(value)
                    for delta in parsers[i].finish():
                        yield chunk(delta, index=i)
                    yield chunk({}, finish=parsers[i].result().finish_reason(value["finish_reason"]), index=i)
            if include_usage:
                yield chunk({}, usage=_usage(done), choices=False)
            yield "data: [DONE]\n\n"
        except APIError as e:
            yield f"data: {json.dumps(e.body())}\n\n"
        finally:
            job.cancelled.set()  # a client that disconnected mid-stream frees the worker

    return app


def serve(model_name: str, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          served_name: str | None = None, max_prompt_tokens: int | None = None,
          max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT, precision: str | None = None, dtype=None, cache_dir=None,
          tool_format=None, template_kwargs: dict | None = None) -> None:
    """Load ``model_name`` and serve it until interrupted (what ``sftune serve`` runs).

    ``tool_format`` and ``template_kwargs`` default to what training saved beside the model
    (:mod:`sftune.model.chat_settings`); given ones win.
    """
    from ..model.chat_settings import read_chat_settings
    from pathlib import Path

    import uvicorn

    from ..model.loading import load_for_inference

    model, tokenizer = load_for_inference(model_name, precision=dtype or precision or "auto", cache_dir=cache_dir)
    name = served_name or (Path(model_name).name if model_name != "default" else "SmolLM2-135M-Instruct")
    saved = read_chat_settings(model_name)
    app = create_app(model, tokenizer, model_name=name, api_key=api_key,
                     max_prompt_tokens=max_prompt_tokens, max_tokens_limit=max_tokens_limit,
                     tool_format=tool_format if tool_format is not None else saved["tool_format"],
                     template_kwargs={**saved["template_kwargs"], **(template_kwargs or {})})
    if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        log.warning("serving on %s without --api-key: anyone who can reach this port can use the model", host)
    print(f"serving {name} at http://{host}:{port}/v1  (OpenAI base_url; model id '{name}'"
          f"{', API key required' if api_key else ''}); Ctrl-C stops", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info")
