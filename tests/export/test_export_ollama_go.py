"""The Modelfile TEMPLATE rendered by Go's own text/template (the engine Ollama uses) equals the
model's Jinja chat template on the same conversations.

Ollama passes the template ``.Messages`` (each with ``.Role`` and ``.Content``) and, when a request
has no system message, prepends the Modelfile's ``SYSTEM`` as one; the test does the same.
Needs the Go toolchain (``apt-get install golang-go``); skips with that reason otherwise.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("go") is None,
                                reason="the Go toolchain is not installed (apt-get install golang-go): "
                                       "cannot run Go's text/template, the engine Ollama renders TEMPLATE with")

GO_RENDER = r"""
package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

func main() {
	src, _ := os.ReadFile(os.Args[1])
	var convs [][]Message
	if err := json.NewDecoder(os.Stdin).Decode(&convs); err != nil {
		panic(err)
	}
	tmpl := template.Must(template.New("t").Parse(string(src)))
	var out []string
	for _, msgs := range convs {
		var b stringsBuilder
		if err := tmpl.Execute(&b, map[string]any{"Messages": msgs}); err != nil {
			panic(err)
		}
		out = append(out, b.s)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

type stringsBuilder struct{ s string }

func (b *stringsBuilder) Write(p []byte) (int, error) { b.s += string(p); return len(p), nil }
"""

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!\nHow can I help?"},
     {"role": "user", "content": "Tell me a {{ joke }} about \"quotes\"."}],
]


def _modelfile_parts(text: str) -> tuple[str, str | None]:
    template = re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M).group(1)
    system = re.search(r'^SYSTEM """(.*?)"""$', text, re.S | re.M)
    return template, system.group(1) if system else None


@pytest.mark.parametrize("template_name", [None, "llama3", "qwen2.5"])
def test_go_rendering_matches_jinja(template_name, model_dirs, tmp_path):
    from transformers import AutoTokenizer

    from sftune.data.templates import install_template, resolve_template
    from sftune.export import export_gguf

    src = model_dirs("llama")
    if template_name:  # the same tiny model saved with another chat template
        src2 = tmp_path / "src"
        shutil.copytree(src, src2)
        tok = AutoTokenizer.from_pretrained(str(src2))
        install_template(tok, resolve_template(template_name, tok, warn=False))
        tok.save_pretrained(str(src2))
        src = src2
    out = tmp_path / "out"
    res = export_gguf(str(src), out / "m.gguf", "q8_0", ollama=True)
    template, system = _modelfile_parts(res.modelfile.read_text())
    (tmp_path / "t.tmpl").write_text(template, encoding="utf-8")
    (tmp_path / "render.go").write_text(GO_RENDER, encoding="utf-8")
    convs = [([{"role": "system", "content": system}] + c if system and c[0]["role"] != "system" else c) for c in CONVERSATIONS]
    env_home = tmp_path / "gohome"
    proc = subprocess.run(["go", "run", str(tmp_path / "render.go"), str(tmp_path / "t.tmpl")], input=json.dumps(convs),
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(env_home), "GOCACHE": str(env_home / "cache"),
                               "GOFLAGS": "-mod=mod", "GO111MODULE": "off"})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    tok = AutoTokenizer.from_pretrained(str(src))
    want = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in CONVERSATIONS]
    assert got == want
