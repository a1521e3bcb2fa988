"""The HTTP face of the inference engine: an ASGI app (Starlette) with an OpenAI-style completions endpoint.

    POST /v1/completions   {"prompt": "To be", "max_tokens": 16, "temperature": 0, "stream": false}
    GET  /health           {"status": "ok", ...}: the model is loaded and the engine is running
    GET  /metrics          the engine's counters and latency percentiles, as JSON

What this layer adds to the engine, and why each piece is here:

- Validation first. Every field is checked before the engine sees the request, and a bad one gets a 400 whose
  message names the field and the fix. A server that guessed (clipping a negative temperature, dropping an
  unknown field) would answer a different question than the one asked, and the client would never know.
- Backpressure. The engine's queue is bounded; when it is full the answer is 503 with a Retry-After header,
  right away, instead of a request that waits without limit while its client has long given up (Q22).
- Streaming. With "stream": true each token leaves as a server-sent event the moment the engine picks it,
  so the first words arrive after one decoding step instead of after the whole completion.
- Threads meet asyncio. The engine decodes on its own thread and calls on_token/on_finish there; asyncio
  objects are not thread-safe, so each callback only hands its event to the event loop with
  loop.call_soon_threadsafe, and the request's coroutine reads the events from an asyncio.Queue.
- Disconnects free the slot. A client that goes away mid-completion cancels its request (handle.cancel()),
  so the batch slot serves someone else at the next token boundary instead of decoding text nobody reads.
"""
from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from contextlib import asynccontextmanager

import numpy as np
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from .engine import CompletionRequest, QueueFullError

DEFAULT_MAX_TOKENS = 16        # what OpenAI's completions endpoint generates when max_tokens is left out
DEFAULT_MAX_TOKENS_LIMIT = 512  # the largest max_tokens one request may ask for: one client cannot hold a slot forever
EXAMPLE_BODY = '{"prompt": "Hello", "max_tokens": 16}'


class InvalidRequest(ValueError):
    """A request body the server will not run; `field` names the culprit (None for the body as a whole)."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field


# --------------------------------------------------------------------------------------------- validation
def _json_kind(value) -> str:
    """How a JSON value reads to the client: 'true' is a boolean, not the integer 1 Python takes it for."""
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object", type(None): "null"}[type(value)]


def _integer(body: dict, name: str, default, at_least: int, at_most: int | None = None, meaning: str = ""):
    """body[name] checked to be an integer in range; a missing field or null takes the default."""
    value = body.get(name)
    if value is None:
        return default
    if type(value) is not int:  # bool is a subclass of int in Python, and 16.0 is not a token count
        example = default if default is not None else at_least
        raise InvalidRequest(name, f"'{name}' must be an integer ({meaning}), got {json.dumps(value)} "
                                   f"({_json_kind(value)}); send e.g. \"{name}\": {example}")
    if value < at_least or (at_most is not None and value > at_most):
        bounds = f">= {at_least}" if at_most is None else f"between {at_least} and {at_most}"
        raise InvalidRequest(name, f"'{name}' must be {bounds} ({meaning}), got {value}")
    return value


def _real(body: dict, name: str, default, meaning: str):
    """body[name] checked to be a finite number (an integer is fine); a missing field or null takes the default."""
    value = body.get(name)
    if value is None:
        return default
    if type(value) not in (int, float) or not math.isfinite(value):
        raise InvalidRequest(name, f"'{name}' must be a finite number ({meaning}), got {json.dumps(value)} "
                                   f"({_json_kind(value)})")
    return float(value)


def _prompt_ids(body: dict, tokenizer, max_context: int) -> np.ndarray:
    """The prompt's token ids; a 400 for a missing, empty, unencodable or too long prompt."""
    if "prompt" not in body:
        raise InvalidRequest("prompt", f"'prompt' is required: the text the model continues, e.g. {EXAMPLE_BODY}")
    prompt = body["prompt"]
    if not isinstance(prompt, str):
        raise InvalidRequest("prompt", f"'prompt' must be a string, got {_json_kind(prompt)}; "
                                       "send one text to continue (batches of prompts are separate requests)")
    if not prompt:
        raise InvalidRequest("prompt", "'prompt' is empty; a language model needs at least one character of "
                                       "text to continue")
    try:
        ids = tokenizer.encode(prompt)
    except ValueError:
        position, character = _first_unencodable(prompt, tokenizer)
        raise InvalidRequest("prompt", f"'prompt' holds {character!r} (code point U+{ord(character):04X}) at "
                                       f"position {position}, which is not in the model's vocabulary of "
                                       f"{tokenizer.vocab_size} tokens; remove or replace that character (the "
                                       "model never saw it in training, so it has no token for it)") from None
    if len(ids) > max_context:
        raise InvalidRequest("prompt", f"'prompt' is {len(ids)} tokens long but the model reads at most "
                                       f"{max_context}; shorten it to its last {max_context} tokens")
    return ids


def _first_unencodable(prompt: str, tokenizer) -> tuple[int, str]:
    """(position, character) of the first character the tokenizer cannot encode on its own."""
    for position, character in enumerate(prompt):
        try:
            tokenizer.encode(character)
        except ValueError:
            return position, character
    raise AssertionError("the tokenizer rejected the prompt but accepts each of its characters")


ACCEPTED_FIELDS = ("prompt", "max_tokens", "temperature", "top_k", "top_p", "seed", "stream", "model")


def parse_completion_body(raw: bytes, tokenizer, max_context: int,
                          max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT) -> tuple[CompletionRequest, bool]:
    """(the engine's request, stream?) from a POST body, or InvalidRequest naming the field and the fix.

    "model" is accepted and ignored (OpenAI clients always send it; this server holds one model).
    """
    try:
        body = json.loads(raw)
    except ValueError as error:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8
        raise InvalidRequest(None, f"the body is not valid JSON ({error}); send a JSON object such as "
                                   f"{EXAMPLE_BODY}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(None, f"the body must be a JSON object, got {_json_kind(body)}; send e.g. "
                                   f"{EXAMPLE_BODY}")
    unknown = [name for name in body if name not in ACCEPTED_FIELDS]
    if unknown:
        raise InvalidRequest(unknown[0], f"unknown field(s) {unknown}; this endpoint accepts only "
                                         f"{list(ACCEPTED_FIELDS)} (check the spelling)")
    max_tokens = _integer(body, "max_tokens", DEFAULT_MAX_TOKENS, 1, max_tokens_limit, "tokens to generate")
    temperature = _real(body, "temperature", 1.0, "0 is greedy, 1 samples the model's own distribution")
    if temperature < 0:
        raise InvalidRequest("temperature", f"'temperature' must be >= 0 (0 = greedy decoding), got {temperature}")
    top_k = _integer(body, "top_k", None, 1, None, "sample among the k likeliest tokens; null for all")
    top_p = _real(body, "top_p", None, "the probability mass kept; null for all")
    if top_p is not None and not 0 < top_p <= 1:
        raise InvalidRequest("top_p", f"'top_p' must be in (0, 1] (the probability mass kept), got {top_p}; "
                                      "use 1 or null to keep every token")
    seed = _integer(body, "seed", None, 0, None, "the seed of this request's own random generator")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream", f"'stream' must be true or false, got {json.dumps(stream)}")
    if not isinstance(body.get("model", ""), str):
        raise InvalidRequest("model", f"'model' must be a string, got {_json_kind(body['model'])}")
    prompt_ids = _prompt_ids(body, tokenizer, max_context)
    request = CompletionRequest(prompt_ids=prompt_ids, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                                top_p=top_p, seed=seed)
    return request, stream


# --------------------------------------------------------------------------------------------- engine -> asyncio
class TokenChannel:
    """One request's events, carried from the engine's thread to the event loop that answers the client.

    The callbacks run on the engine thread, where touching an asyncio.Queue directly would be a data race:
    call_soon_threadsafe queues the put on the loop's own thread and wakes the loop. Iterating yields
    ("token", id) for each token, then ("finish", reason) once, and stops.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._events: asyncio.Queue = asyncio.Queue()
        self.finish_reason: str | None = None

    def on_token(self, token_id: int) -> None:
        self._loop.call_soon_threadsafe(self._events.put_nowait, ("token", int(token_id)))

    def on_finish(self, reason: str) -> None:
        self._loop.call_soon_threadsafe(self._events.put_nowait, ("finish", reason))

    async def __aiter__(self):
        while self.finish_reason is None:
            kind, value = await self._events.get()
            if kind == "finish":
                self.finish_reason = value
            yield kind, value


# --------------------------------------------------------------------------------------------- responses
def _error(status: int, message: str, field: str | None = None, kind: str = "invalid_request_error",
           headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": field}}, status, headers=headers)


def _choice(text: str, finish_reason: str | None) -> dict:
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}


def _split_reason(reason: str) -> tuple[str, str | None]:
    """The engine's "error: <message>" becomes finish_reason "error" plus the message."""
    if reason.startswith("error: "):
        return "error", reason[len("error: "):]
    return reason, None


async def _cancel_when_client_leaves(receive, handle) -> None:
    """Wait for the client's http.disconnect, then free its slot (used while a non-streamed answer is built)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    handle.cancel()


def build_app(engine, tokenizer, model_name: str = "gpt",
              max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT) -> Starlette:
    """The ASGI app serving `engine` (an InferenceEngine, not yet started) with `tokenizer`'s text <-> ids.

    The app owns the engine's life: its lifespan starts the engine when the server starts and stops it when
    the server stops. By then the server has stopped accepting connections and waited for in-flight answers
    (uvicorn's graceful-shutdown timeout), so stopping cancels only what outlived that grace period.
    """
    max_context = engine.model.max_context

    @asynccontextmanager
    async def lifespan(app):
        engine.start()
        try:
            yield
        finally:  # stop() joins the engine thread: off the event loop, so the loop keeps answering meanwhile
            await asyncio.to_thread(engine.stop, cancel_in_flight=True)

    async def completions(request):
        try:
            completion, stream = parse_completion_body(await request.body(), tokenizer, max_context, max_tokens_limit)
        except InvalidRequest as error:
            return _error(400, str(error), error.field)
        channel = TokenChannel(asyncio.get_running_loop())
        try:
            handle = engine.submit(completion, channel.on_token, channel.on_finish)
        except QueueFullError as error:
            retry_after = max(1, math.ceil(error.retry_after_s))  # the header holds whole seconds
            return _error(503, f"the server is at capacity ({engine.max_queue} requests already wait); retry in "
                               f"about {retry_after} s", kind="server_overloaded",
                          headers={"Retry-After": str(retry_after)})
        except ValueError as error:  # the engine's own check, behind ours
            return _error(400, str(error))
        except RuntimeError as error:  # the engine stopped admitting: the server is shutting down
            return _error(503, f"the server is shutting down ({error}); send the request to another server",
                          kind="server_shutting_down")
        header = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                  "model": model_name}
        if stream:
            return StreamingResponse(_stream(channel, handle, tokenizer, header), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return await _complete(channel, handle, tokenizer, header, request.receive, len(completion.prompt_ids))

    async def health(request):
        return JSONResponse({"status": "ok", "model": model_name, "max_context": max_context,
                             "vocab_size": tokenizer.vocab_size})

    async def metrics(request):
        return JSONResponse(engine.metrics())

    routes = [Route("/v1/completions", completions, methods=["POST"]), Route("/health", health, methods=["GET"]),
              Route("/metrics", metrics, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan)


async def _complete(channel: TokenChannel, handle, tokenizer, header: dict, receive, prompt_tokens: int):
    """The whole completion as one JSON answer, built as the tokens arrive."""
    watcher = asyncio.create_task(_cancel_when_client_leaves(receive, handle))
    tokens = []
    try:
        async for kind, value in channel:
            if kind == "token":
                tokens.append(value)
    finally:  # also reached when the server cancels this task at the end of its shutdown grace period
        watcher.cancel()
        if channel.finish_reason is None:
            handle.cancel()
    finish_reason, message = _split_reason(channel.finish_reason)
    if message is not None:
        return _error(500, f"the engine failed while generating: {message}", kind="server_error")
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
             "total_tokens": prompt_tokens + len(tokens)}
    return JSONResponse({**header, "choices": [_choice(tokenizer.decode(tokens), finish_reason)], "usage": usage})


def _event(payload) -> str:
    """One server-sent event: a `data:` line and a blank line."""
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


async def _stream(channel: TokenChannel, handle, tokenizer, header: dict):
    """Server-sent events: one chunk per token (its text delta), a last chunk with the finish reason, [DONE].

    A stream decoder turns ids into text: a byte-level token may hold part of a character, which is held
    back until complete, so the deltas always concatenate to the decoded completion. When the client
    disconnects, Starlette cancels this generator; `finally` then frees the request's slot.
    """
    decoder = tokenizer.stream_decoder()
    try:
        async for kind, value in channel:
            if kind == "token":
                yield _event({**header, "choices": [_choice(decoder.push(value), None)]})
        finish_reason, message = _split_reason(channel.finish_reason)
        last = {**header, "choices": [_choice(decoder.flush(), finish_reason)]}
        if message is not None:
            last["error"] = {"message": f"the engine failed while generating: {message}", "type": "server_error"}
        yield _event(last)
        yield _event("[DONE]")
    finally:
        if channel.finish_reason is None:
            handle.cancel()
