"""Render each conversation *shape* once: the fast, still exact, path to text and trained spans.

Most chat templates decide everything from the shape of a conversation (its sequence of roles)
and only paste each message's content into place. For such a template, every conversation with
the same roles renders to the same literal pieces around its contents. So each shape is rendered
once, with sentinel contents, for the full text and for the two prefixes of every assistant turn
(see :mod:`sftune.data.tokenize`); every conversation of that shape is then assembled by joining
strings, and its spans follow by arithmetic. Preparing a dataset then costs a handful of Jinja
renders per *shape* instead of ``1 + 2 × turns`` per *conversation*.

Whether a template treats content as opaque is proved from its Jinja syntax tree, not guessed
(:func:`opacity_problem`): every read of a message's ``content`` must flow straight into the
output, through ``+``/``~`` concatenation only, never into an ``if``, a filter, a test, a
``set``, a macro or a call, and nothing may serialise whole messages (``tojson``, ``items()``,
``{{ message }}``).
Templates that fail (Llama 3's trims content; Qwen3's looks for ``<think>``) keep the exact
per-conversation renders. As a second guard the first conversation of every shape is also
rendered the exact way and compared; a difference turns this path off for the rest of the run.

>>> opacity_problem("{% for m in messages %}{{ '<' + m['role'] + '>' + m['content'] }}{% endfor %}") is None
True
>>> opacity_problem("{% for m in messages %}{{ m['content'] | trim }}{% endfor %}")
"message content is used through the 'trim' filter (line 1)"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension

from .templates import TemplateError, render

# Private-use characters: never written by a template's own literal text.
_OPEN, _CLOSE = "\ue000", "\ue001"
_SENTINEL = re.compile(f"{_OPEN}(\\d+){_CLOSE}")

# Filters and methods that turn a whole message (or any dict) into text or iterate its values,
# which would expose content without a visible ``['content']``.
_LEAKY_FILTERS = {"tojson", "string", "pprint", "dictsort", "items", "xmlattr", "attr", "list", "join", "format"}
_LEAKY_METHODS = {"items", "values", "get", "__str__", "__repr__", "format"}


def opacity_problem(template: str) -> str | None:
    """``None`` when ``template`` only ever pastes message content verbatim into its output;
    otherwise why not (the first problem found, with its line)."""
    env = jinja2.Environment(extensions=["jinja2.ext.loopcontrols", _GenerationTag])
    try:
        tree = env.parse(template)
    except jinja2.TemplateSyntaxError as e:
        return f"the template does not parse: {e}"

    allowed_consts: set[int] = set()
    problems: list[str] = []

    def content_read(node) -> bool:
        if isinstance(node, nodes.Getattr):
            return node.attr == "content"
        return isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and node.arg.value == "content"

    def verbatim(parents: tuple) -> bool:
        # (Add | Concat)* then Output, with no block above that captures or transforms output.
        k = len(parents) - 1
        while k >= 0 and isinstance(parents[k], (nodes.Add, nodes.Concat)):
            k -= 1
        if k < 0 or not isinstance(parents[k], nodes.Output):
            return False
        for p in parents[:k]:
            if isinstance(p, (nodes.AssignBlock, nodes.FilterBlock, nodes.Macro)):
                return False
            if isinstance(p, nodes.CallBlock) and not _is_generation(p):
                return False
        return True

    def walk(node, parents: tuple) -> None:
        line = getattr(node, "lineno", "?")
        if content_read(node):
            if isinstance(node, nodes.Getitem):
                allowed_consts.add(id(node.arg))
            if not verbatim(parents):
                problems.append(f"message content is used {_where(parents)} (line {line})")
        elif isinstance(node, nodes.Const) and node.value == "content" and id(node) not in allowed_consts:
            problems.append(f"the string 'content' is used other than as message['content'] (line {line})")
        elif isinstance(node, nodes.Filter) and node.name in _LEAKY_FILTERS:
            problems.append(f"the '{node.name}' filter can expose whole messages (line {line})")
        elif isinstance(node, nodes.Getattr) and node.attr in _LEAKY_METHODS:
            problems.append(f"'.{node.attr}' can expose whole messages (line {line})")
        for child in node.iter_child_nodes():
            walk(child, parents + (node,))

    walk(tree, ())
    if not problems:
        problems.extend(_whole_message_outputs(tree))
    return problems[0] if problems else None


def _names(node) -> set[str]:
    """Every variable name in ``node``'s expression, ``node`` itself included."""
    found = {n.name for n in node.find_all(nodes.Name)}
    if isinstance(node, nodes.Name):
        found.add(node.name)
    return found


def _mentions(node, names: set[str]) -> bool:
    return not _names(node).isdisjoint(names)


def _message_names(tree) -> set[str]:
    """Variables that may hold a message or a list of them: ``messages``, loop variables over
    them, and names set from expressions that mention them (over-approximated: a name set from
    ``messages[0]['role']`` counts too, which only ever refuses a template)."""
    names = {"messages"}
    for _ in range(8):  # to a fixpoint; templates chain a few names at most
        before = len(names)
        for loop in tree.find_all(nodes.For):
            if _mentions(loop.iter, names):
                names.update(_names(loop.target))
        for assign in tree.find_all(nodes.Assign):
            if _mentions(assign.node, names):
                names.update(_names(assign.target))
        if len(names) == before:
            break
    return names


def _whole_message_outputs(tree) -> list[str]:
    """Output expressions that would write a message (not just its role or content) as text,
    e.g. ``{{ message }}`` or ``{{ messages | first }}``: the dict's repr escapes the content."""
    names = _message_names(tree)
    problems = []

    def key(node) -> object:
        if isinstance(node, nodes.Getattr):
            return node.attr
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            return node.arg.value
        return None

    def check(expr) -> None:
        if isinstance(expr, (nodes.Add, nodes.Concat)):
            for child in expr.iter_child_nodes():
                check(child)
        elif isinstance(expr, nodes.CondExpr):
            check(expr.expr1)
            if expr.expr2 is not None:
                check(expr.expr2)
        elif key(expr) in ("content", "role"):
            return
        elif isinstance(expr, nodes.Filter) and (expr.name in ("length", "count") or key(expr.node) == "role"):
            return  # a number, or the role reformatted (roles are part of the shape)
        elif _mentions(expr, names):
            problems.append(f"a message is written into the output other than by its role or content (line {expr.lineno})")

    for out in tree.find_all(nodes.Output):
        for expr in out.nodes:
            if not isinstance(expr, nodes.TemplateData):
                check(expr)
    return problems


def _where(parents: tuple) -> str:
    for p in reversed(parents):
        if isinstance(p, nodes.Filter):
            return f"through the '{p.name}' filter"
        if isinstance(p, nodes.Test):
            return f"in an '{p.name}' test"
        if isinstance(p, (nodes.If, nodes.CondExpr)):
            return "in a condition"
        if isinstance(p, (nodes.Assign, nodes.AssignBlock)):
            return "in a {% set %}"
        if isinstance(p, nodes.Compare):
            return "in a comparison"
        if isinstance(p, nodes.Call):
            return "as a call argument"
        if isinstance(p, (nodes.Macro, nodes.CallBlock, nodes.FilterBlock)):
            return "inside a macro or block"
    return "other than pasted into the output"


def _is_generation(block) -> bool:
    return isinstance(block.call, nodes.Call) and getattr(block.call.node, "name", None) == "_generation_block"


class _GenerationTag(Extension):
    """Parses HF's ``{% generation %}...{% endgeneration %}`` into a recognisable CallBlock."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = nodes.Call(nodes.Name("_generation_block", "load"), [], [], None, None)
        return nodes.CallBlock(call, [], [], body).set_lineno(lineno)


def trained_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The trained part of an answer's characters ``[start, end)``: without the whitespace a
    template writes after the end-of-turn token (generation stops before it); ``None`` if empty.

    >>> trained_span("<a>Hi<end>\\n<u>", 3, 11)
    (3, 10)
    """
    end = start + len(text[start:end].rstrip())
    return (start, end) if end > start else None


@dataclass
class _Shape:
    """One role sequence, rendered with sentinel contents: ``pieces[0] + content[refs[0]] +
    pieces[1] + ...``. ``turns`` maps an assistant message index to its span in (piece, offset)
    coordinates, or to ``None`` when that turn needs the exact path (it raised, or the template
    is not prefix-stable there: the exact path then reports it properly)."""

    full: str  # the sentinel text itself
    pieces: list[str]
    refs: list[int]
    starts: list[int]  # where each piece starts in the sentinel text
    turns: dict[int, tuple | None] = field(default_factory=dict)


class ShapeRenderer:
    """Text and trained character spans of chat conversations, one Jinja render per shape.

    Only for templates where :func:`opacity_problem` is ``None``. ``text_and_spans`` returns
    ``None`` whenever a conversation needs the exact path instead.
    """

    def __init__(self, tokenizer, template: str, template_kwargs: dict | None = None):
        self.tokenizer = tokenizer
        self.template = template
        self.template_kwargs = template_kwargs
        self._shapes: dict[tuple[str, ...], _Shape | None] = {}
        self._plans: dict[tuple, tuple | None] = {}

    def _render(self, roles, n: int, add_generation_prompt: bool = False) -> str:
        msgs = [{"role": r, "content": f"{_OPEN}{k}{_CLOSE}"} for k, r in enumerate(roles[:n])]
        return render(self.tokenizer, self.template, msgs, add_generation_prompt=add_generation_prompt, template_kwargs=self.template_kwargs)

    def _shape(self, roles: tuple[str, ...]) -> _Shape | None:
        if roles not in self._shapes:
            try:
                text = self._render(roles, len(roles))
            except Exception:  # the exact path renders it again and reports the error per row
                self._shapes[roles] = None
                return None
            split = _SENTINEL.split(text)
            pieces, refs = split[0::2], [int(k) for k in split[1::2]]
            if any(_OPEN in p or _CLOSE in p for p in pieces) or any(k >= len(roles) for k in refs):
                self._shapes[roles] = None
                return None
            starts, pos = [], 0
            for k, piece in enumerate(pieces):
                starts.append(pos)
                pos += len(piece) + (len(f"{_OPEN}{refs[k]}{_CLOSE}") if k < len(refs) else 0)
            self._shapes[roles] = _Shape(text, pieces, refs, starts)
        return self._shapes[roles]

    def _turn(self, shape: _Shape, roles: tuple[str, ...], i: int) -> tuple | None:
        if i not in shape.turns:
            try:
                prefix = self._render(roles, i, add_generation_prompt=True)
                upto = self._render(roles, i + 1)
            except Exception:
                shape.turns[i] = None
                return None
            if not (upto.startswith(prefix) and shape.full.startswith(upto)):
                shape.turns[i] = None
            else:
                a, b = self._locate(shape, len(prefix)), self._locate(shape, len(upto))
                shape.turns[i] = (a, b) if a is not None and b is not None else None
        return shape.turns[i]

    @staticmethod
    def _locate(shape: _Shape, pos: int) -> tuple[int, int] | None:
        # A boundary must fall in literal text (or at its ends), never inside a sentinel.
        for k, (start, piece) in enumerate(zip(shape.starts, shape.pieces)):
            if start <= pos <= start + len(piece):
                return k, pos - start
        return None

    def _plan(self, roles: tuple[str, ...], chosen: tuple[int, ...]) -> tuple | None:
        """``(shape, span coordinates)`` for this shape and choice of turns, cached."""
        key = (roles, chosen)
        if key not in self._plans:
            shape = self._shape(roles)
            turns = None if shape is None else [self._turn(shape, roles, i) for i in chosen]
            self._plans[key] = None if turns is None or any(t is None for t in turns) else (shape, turns)
        return self._plans[key]

    def text_and_spans(self, messages, chosen: list[int], whole: bool) -> tuple[str, list[tuple[int, int]]] | None:
        """``messages``: the conversation's messages; ``chosen``: assistant indices to train;
        ``whole``: train every token (``--mask all``). ``None``: use the exact path."""
        plan = self._plan(tuple(m.role for m in messages), tuple(chosen))
        if plan is None:
            return None
        shape, turns = plan
        parts, starts, pos = [], [], 0
        for piece, ref in zip(shape.pieces, shape.refs + [None]):
            starts.append(pos)
            parts.append(piece)
            pos += len(piece)
            if ref is not None:
                content = messages[ref].content
                parts.append(content)
                pos += len(content)
        text = "".join(parts)
        if whole:
            return text, [(0, len(text))]
        spans = []
        for (k1, o1), (k2, o2) in turns:
            span = trained_span(text, starts[k1] + o1, starts[k2] + o2)
            if span:
                spans.append(span)
        return text, spans
