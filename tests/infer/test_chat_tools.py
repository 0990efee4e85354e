"""``sftune chat`` with a tool-calling template: reasoning shown apart, calls shown as calls, /tool answers them.

Generation is scripted (a tiny random model cannot call tools); rendering and parsing are real.
"""

from __future__ import annotations

import io

from sftune.data.templates import BUILTIN_TEMPLATES

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_chat_shows_reasoning_and_calls_and_takes_tool_results(tiny, monkeypatch):
    import sftune.infer.generate as gen
    from sftune.infer.chat import run_chat

    model, tok = tiny
    tok = type(tok).from_pretrained(tok.name_or_path)
    tok.chat_template = BUILTIN_TEMPLATES["qwen3"]
    replies = iter(['<think>\nNeeds the tool.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
                    "It is 3 °C in Oslo."])
    prompts = []

    def scripted(model, tokenizer, ids, *, on_text=None, **kw):
        prompts.append(tokenizer.decode(ids))
        text = next(replies)
        for i in range(0, len(text), 4):
            on_text(text[i:i + 4])
        return {"text": text, "finish_reason": "stop", "prompt_tokens": len(ids), "completion_tokens": 3}

    monkeypatch.setattr(gen, "stream_generate", scripted)
    out = io.StringIO()
    session = run_chat(model, tok, io.StringIO('Weather in Oslo?\n/tool {"temperature": 3}\n/quit\n'), out,
                       tools=TOOLS, template_kwargs={"enable_thinking": True}, temperature=0)
    shown = out.getvalue()
    assert "thinking: Needs the tool." in shown and '-> call get_weather(city="Oslo")' in shown
    assert "<tool_call>" not in shown and "It is 3 °C in Oslo." in shown
    roles = [m["role"] for m in session.history]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert session.history[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert session.history[1]["reasoning_content"] == "Needs the tool."
    assert "get_weather" in prompts[0] and '{"temperature": 3}' in prompts[1]  # tools rendered; the result is context
