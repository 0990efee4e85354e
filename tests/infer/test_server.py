"""The OpenAI-compatible server, run for real (uvicorn on a free port) and driven by the openai client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

KEY = "sk-test-key"
ASK = [{"role": "user", "content": "Say something about herons."}]


@pytest.fixture(scope="module")
def server(tiny, run_app):
    """Base URL of a running server with an API key; shut down after the module."""
    from sftune.infer.server import create_app

    model, tok = tiny
    app = create_app(model, tok, model_name="tiny", api_key=KEY, max_prompt_tokens=200, max_tokens_limit=64)
    with run_app(app) as url:
        yield url


@pytest.fixture()
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server, api_key=KEY, max_retries=0, timeout=60)


def test_models_and_plain_completion(client, tiny):
    from sftune.infer.generate import generate_texts

    assert [m.id for m in client.models.list().data] == ["tiny"]
    r = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=8)
    choice = r.choices[0]
    assert r.object == "chat.completion" and choice.message.role == "assistant"
    ref = generate_texts(*tiny, [ASK], max_new_tokens=8)[0][0]  # the library path gives the same answer
    assert choice.message.content == ref["text"] and choice.finish_reason == ref["finish_reason"]
    assert r.usage.prompt_tokens == ref["prompt_tokens"] and r.usage.completion_tokens == ref["completion_tokens"]
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_stream_concatenation_equals_plain_greedy_answer(client):
    plain = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=12)
    stream = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=12, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1  # streamed in pieces
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [plain.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_raw_sse_ends_with_done(server):
    with httpx.stream("POST", f"{server}/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                      json={"messages": ASK, "max_tokens": 3, "temperature": 0, "stream": True}, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


def test_length_stop_and_seed(client):
    r = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=2)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 2
    full = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=16).choices[0].message.content
    cut = full.strip()[len(full.strip()) // 2 :][:2]
    assert cut
    stopped = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=16, stop=[cut])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == full[: full.find(cut)]
    a, b = (client.chat.completions.create(model="tiny", messages=ASK, temperature=1.0, top_p=0.9, max_tokens=10, seed=7)
            .choices[0].message.content for _ in range(2))
    assert a == b


def test_concurrent_requests_match_solo_answers(client):
    questions = ["one", "two two", "three three three", "four"]

    def ask(q):
        r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": q}], temperature=0, max_tokens=10)
        return r.choices[0].message.content

    alone = [ask(q) for q in questions]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(ask, questions))
    assert together == alone


def test_wrong_or_missing_key(server):
    import openai

    bad = openai.OpenAI(base_url=server, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="tiny", messages=ASK, max_tokens=2)
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    r = httpx.get(f"{server}/models")
    assert r.status_code == 401 and "Bearer" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "tiny"}, "messages"),  # missing messages
        ({"messages": "hello"}, "messages"),  # wrong type
        ({"messages": []}, "messages"),  # empty
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),  # unknown role
        ({"messages": [{"role": "user"}]}, "messages.0.content"),  # missing content
        ({"messages": ASK, "max_tokens": "many"}, "max_tokens"),
        ({"messages": ASK, "temperature": -1}, "temperature"),
        ({"messages": ASK, "max_tokens": 10_000}, "max_tokens"),  # above the server's limit
        ({"messages": [{"role": "user", "content": "word " * 400}]}, "messages"),  # prompt too long
        ({"messages": ASK, "max_tokens": 0}, "max_tokens"),
        ({"messages": ASK, "top_p": 0}, "top_p"),
        ({"messages": ASK, "frequency_penalty": 3}, "frequency_penalty"),
        ({"messages": ASK, "presence_penalty": -2.5}, "presence_penalty"),
        ({"messages": ASK, "logit_bias": {"hello": 5}}, "logit_bias"),  # keys must be token ids
        ({"messages": ASK, "logit_bias": {"5": 500}}, "logit_bias"),  # values in [-100, 100]
        ({"messages": ASK, "logit_bias": {"99999999": 5}}, "logit_bias"),  # outside the vocabulary
        ({"messages": ASK, "n": 0}, "n"),
        ({"messages": ASK, "n": 2, "temperature": 0}, "n"),  # n identical greedy answers: refused
        ({"messages": ASK, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_bad_requests_get_openai_style_400(server, body, param):
    r = httpx.post(f"{server}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["message"]


def test_bad_request_raises_openai_bad_request_error(client):
    import openai

    with pytest.raises(openai.BadRequestError, match="above this server's limit of 64"):
        client.chat.completions.create(model="tiny", messages=ASK, max_tokens=1000)
    with pytest.raises(openai.BadRequestError, match="context_length_exceeded|prompt is"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "word " * 400}], max_tokens=2)


def test_malformed_json_and_unknown_route(server):
    h = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    r = httpx.post(f"{server}/chat/completions", content=b"{not json", headers=h)
    assert r.status_code == 400 and "error" in r.json()
    r = httpx.get(f"{server}/nothing", headers=h)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_model_without_chat_template_is_refused_at_startup(tiny):
    import copy

    from sftune.infer.server import create_app
    from sftune.model.loading import ModelLoadError

    model, tok = tiny
    plain = copy.copy(tok)
    plain.chat_template = None
    with pytest.raises(ModelLoadError, match="no chat template"):
        create_app(model, plain, model_name="x")


def test_logit_bias_and_penalties_are_applied(client, tiny):
    from sftune.infer.generate import generate_texts

    model, tok = tiny
    tid = 300
    r = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=5, logit_bias={str(tid): 100})
    assert r.choices[0].message.content == tok.decode([tid] * 5)
    kw = dict(max_new_tokens=8, logit_bias={tid: 8}, frequency_penalty=2.0, presence_penalty=1.0)
    ref = generate_texts(model, tok, [ASK], **kw)[0][0]["text"]  # the library path with the same parameters
    plain = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=8, logit_bias={str(tid): 8})
    penal = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=8, logit_bias={str(tid): 8},
                                           frequency_penalty=2.0, presence_penalty=1.0)
    assert penal.choices[0].message.content == ref != plain.choices[0].message.content


def test_n_choices_plain_and_streamed(client):
    kw = dict(model="tiny", messages=ASK, temperature=1.0, max_tokens=6, n=3, seed=11)
    r = client.chat.completions.create(**kw)
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = [c.message.content for c in r.choices]
    assert len(set(texts)) > 1  # sampled with seeds 11, 12, 13: not three copies
    assert texts == [c.message.content for c in client.chat.completions.create(**kw).choices]  # seeded: repeatable
    assert r.usage.completion_tokens == sum(
        client.chat.completions.create(model="tiny", messages=ASK, temperature=1.0, max_tokens=6, seed=11 + i).usage.completion_tokens
        for i in range(3))
    chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    streamed = ["".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == i) for i in range(3)]
    assert streamed == texts
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens
