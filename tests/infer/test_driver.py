"""answer_pending: only the rows not done, in input order, chunk by chunk, each chunk seeded by its first row."""

from __future__ import annotations

from sftune.infer import generate
from sftune.infer.driver import answer_pending


class Sink:
    def __init__(self, done):
        self.done, self.flushes, self.rows = done, [], []

    def flush(self):
        self.flushes.append(list(self.rows))


def test_answers_the_missing_rows_in_chunks(monkeypatch):
    calls = []

    def fake_generate_texts(model, tok, prompts, *, batch_size, seed, **sampling):
        calls.append((list(prompts), batch_size, seed, sampling))
        return [[{"text": p.upper()}] for p in prompts]

    monkeypatch.setattr(generate, "generate_texts", fake_generate_texts)
    prompts = {0: "a", 2: "b", 3: "c", 5: "d", 6: "e", 9: "f"}  # input rows without a prompt are absent
    out = Sink(done={2, 6})
    n = answer_pending(None, None, prompts, out, lambda i, c: out.rows.append((i, c[0]["text"])),
                       chunk=2, batch_size=4, seed=10, progress=False, max_new_tokens=7)
    assert n == 4
    assert out.rows == [(0, "A"), (3, "C"), (5, "D"), (9, "F")]
    # chunks of 2 over the pending rows [0, 3, 5, 9]; seed + first input row of each chunk
    assert calls == [(["a", "c"], 4, 10, {"max_new_tokens": 7}), (["d", "f"], 4, 15, {"max_new_tokens": 7})]
    assert out.flushes == [[(0, "A"), (3, "C")], out.rows]  # flushed after every chunk
    calls.clear()
    assert answer_pending(None, None, prompts, Sink(done=set(prompts)), print, chunk=2, progress=False) == 0
    assert calls == []


def test_no_seed_means_unseeded(monkeypatch):
    seeds = []
    monkeypatch.setattr(generate, "generate_texts", lambda m, t, p, *, batch_size, seed, **kw: seeds.append(seed) or [[{}]] * len(p))
    answer_pending(None, None, {4: "x"}, Sink(done=()), lambda i, c: None, chunk=1, progress=False)
    assert seeds == [None]
