"""The parts of ``benchmarks/gpu_check.py`` that need no GPU, kept here so they are tested on CPU.

* :func:`run_check` runs one check so that a failure is recorded and the next check still runs;
* :func:`write_results` writes the results table (markdown + json) named after the GPU;
* :func:`install_plan` / :func:`install` bring the packages the checks import, from wheels
  carried to the machine (``.gpu_carry``, see :func:`prepare_carry`) or else from PyPI, best-effort;
* the model skeleton, the weight and probe-loss comparisons of a trained model with its reload;
* :func:`packed_vs_unpacked` compares loss and gradients of packed rows with one sample per pass.
Tested by ``tests/benchmarks/test_gpu_check.py``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
CARRY = REPO / ".gpu_carry"  # ignored folder that travels to the GPU machine (benchmarks/README.md)
SITE = Path(tempfile.gettempdir()) / "sftune-gpu-site"  # where wheels are installed (pip --target)
SKELETON = "smollm2-skeleton.tar.gz"  # SmolLM2-135M config + tokenizer, no weights (~1 MB)

#: (import name, distribution, minimum version) of what the checks import. transformers' minimum
#: is the version these checks were written against: sftune passes ``activation_checkpointing``
#: to TrainingArguments, which e.g. 5.17 (the GPU image's, 2026-11) does not know.
NEEDS = [
    ("transformers", "transformers", "5.24"), ("pydantic", "pydantic", "2.7"), ("datasets", "datasets", "3.0"),
    ("peft", "peft", "0.17"), ("accelerate", "accelerate", "1.10.1"), ("trl", "trl", "1.16"),
    ("openai", "openai", "1.30"), ("fastapi", "fastapi", "0.110"), ("uvicorn", "uvicorn", "0.29"),
    ("bitsandbytes", "bitsandbytes", None),
]
#: Dependencies of NEEDS that the GPU image lacks (its package list: /work/.library/device/KINDS.md).
CARRY_EXTRAS = ["pydantic-core", "annotated-types", "typing-inspection", "dill", "multiprocess", "jiter", "distro",
                "sniffio", "starlette", "opentelemetry-api", "httpx2", "httpcore2", "truststore"]
#: Needs the GPU image already meets (accelerate 1.15, peft): left out of the carry, which is full.
DEVICE_HAS = {"peft", "accelerate"}
#: flash-attn has no PyPI wheel (its sdist compiles for ~1 h): used only where installed, else sdpa.
OPTIONAL = [("flash_attn", "flash-attn")]


# ---------------------------------------------------------------- recording checks
@dataclass
class Check:
    """One row of the results table."""

    name: str
    status: str = "skip"  # pass | fail | skip
    seconds: float = 0.0
    summary: str = ""
    details: dict = field(default_factory=dict)


class Skip(Exception):
    """Raised by a check that cannot run here (a missing package, no time left); the reason is recorded."""


def run_check(results: list[Check], name: str, fn, *args, **kwargs) -> Check:
    """Run ``fn(*args, **kwargs) -> (ok, summary, details)`` as one check and append its row.

    Any exception becomes a ``fail`` row with the error and the end of its traceback, so one
    broken check never stops the others.

    >>> rows = []
    >>> run_check(rows, "adds", lambda: (1 + 1 == 2, "1 + 1 = 2", {})).status
    [PASS] adds (0 s): 1 + 1 = 2
    'pass'
    >>> run_check(rows, "raises", lambda: 1 / 0).status
    [FAIL] raises (0 s): ZeroDivisionError: division by zero
    'fail'
    """
    c = Check(name)
    t = time.perf_counter()
    try:
        ok, c.summary, c.details = fn(*args, **kwargs)
        c.status = "pass" if ok else "fail"
    except Skip as e:
        c.status, c.summary = "skip", str(e)
    except Exception as e:  # noqa: BLE001 - recorded, and the next check runs
        c.status, c.summary = "fail", f"{type(e).__name__}: {e}"[:400]
        c.details = {"traceback": traceback.format_exc()[-2000:]}
    c.seconds = round(time.perf_counter() - t, 1)
    results.append(c)
    print(f"[{c.status.upper():4}] {name} ({c.seconds:.0f} s): {c.summary}", flush=True)
    return c


def record_skip(results: list[Check], name: str, reason: str) -> Check:
    """A ``skip`` row for a check that was not started (left out, or no time left)."""
    return run_check(results, name, _raise, Skip(reason))


def _raise(e):
    raise e


def slug(text: str) -> str:
    """A file-name part: ``'NVIDIA H100 80GB HBM3'`` -> ``'nvidia-h100-80gb-hbm3'``.

    >>> slug("NVIDIA H100 80GB HBM3")
    'nvidia-h100-80gb-hbm3'
    """
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_results(checks: list[Check], meta: dict, out_dir: Path, device_name: str) -> tuple[Path, Path]:
    """Write ``gpu_check_<device>.md`` (a table) and ``.json`` (everything) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"gpu_check_{slug(device_name)}"
    lines = [f"# sftune GPU check: {device_name}", ""]
    lines += [f"- {k}: {_cell(v)}" for k, v in meta.items()]
    counts = {s: sum(c.status == s for c in checks) for s in ("pass", "fail", "skip")}
    lines += [f"- result: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped", ""]
    lines += ["| check | status | s | result |", "|---|---|---|---|"]
    lines += [f"| {_cell(c.name)} | {c.status} | {c.seconds:.0f} | {_cell(c.summary)} |" for c in checks]
    bench = [c for c in checks if c.name.startswith("throughput") and c.status == "pass"]
    if bench:  # the sftune-vs-TRL numbers get a table of their own
        lines += ["", "| run | tokens/s | peak GPU memory GiB | trained tokens | steps |", "|---|---|---|---|---|"]
        lines += [f"| {c.name.split(': ', 1)[-1]} | {c.details['tokens_per_s']:.0f} | {c.details['peak_gib']:.2f} | "
                  f"{c.details['trained_tokens']} | {c.details['steps']} |" for c in bench]
    base.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = {"device": device_name, "meta": meta, "checks": [asdict(c) for c in checks]}
    base.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return base.with_suffix(".md"), base.with_suffix(".json")


# ---------------------------------------------------------------- packages
def dist_version(dist: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def has_module(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def install_plan(needs=NEEDS) -> list[tuple[str, str | None]]:
    """``(distribution, installed version or None)`` for every need that is missing or too old."""
    from packaging.version import Version

    plan = []
    for _module, dist, minimum in needs:
        have = dist_version(dist)
        if have is None or (minimum and Version(have) < Version(minimum)):
            plan.append((dist, have))
    return plan


def use_site(site: Path = SITE) -> None:
    """Put the install target first on the path of this process and of every child it starts."""
    import os

    site.mkdir(parents=True, exist_ok=True)
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
    parts = [str(SRC), str(site)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    importlib.invalidate_caches()


def install(plan, carry: Path = CARRY, site: Path = SITE, timeout: int = 240) -> list[dict]:
    """Install the planned distributions: every carried wheel if there are any, else from PyPI.

    Carried wheels go in with ``--no-index --no-deps`` (the GPU machine reaches no network);
    the PyPI route is best-effort (``--retries 0``) under ``timeout`` seconds. Returns one
    record per attempt; a failure is recorded, never raised.
    """
    wheels = sorted((carry / "wheels").glob("*.whl"))
    if not plan and not wheels:
        return []
    use_site(site)
    if wheels:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--upgrade",
               "--target", str(site), *map(str, wheels)]
        what = f"{len(wheels)} carried wheels from {carry / 'wheels'}"
    else:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--retries", "0", "--timeout", "15", "--target", str(site),
               *[d if d != "transformers" else "transformers>=5.24" for d, _ in plan]]
        what = "from PyPI: " + " ".join(d for d, _ in plan)
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        ok, err = p.returncode == 0, p.stderr.strip()[-600:]
    except subprocess.TimeoutExpired:
        ok, err = False, f"pip ran past {timeout} s"
    importlib.invalidate_caches()
    return [{"what": what, "ok": ok, "seconds": round(time.perf_counter() - t, 1), "error": "" if ok else err}]


def prepare_carry(carry: Path = CARRY, model_dir: str | None = None, timeout: int = 600) -> list[str]:
    """On a machine with PyPI: download the wheels the GPU image lacks and the model skeleton.

    Wheels are for CPython 3.12 manylinux x86-64 (the GPU image's Python), pinned to the versions
    installed here where there are any, so the GPU runs what the CPU tests ran. The skeleton is
    SmolLM2-135M's config and tokenizer: the bundled GGUF (98 MB) does not fit into the 64 MiB
    that travel, so the GPU run builds the same architecture with random weights from it.
    Returns what was written.
    """
    wheels = carry / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    dists = [d for _m, d, _v in NEEDS if d not in DEVICE_HAS] + CARRY_EXTRAS
    specs = [f"{d}=={dist_version(d)}" if dist_version(d) else d for d in dists]
    plat = [a for p in ("manylinux_2_28", "manylinux_2_27", "manylinux_2_24", "manylinux_2_17", "manylinux2014")
            for a in ("--platform", f"{p}_x86_64")]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
                    "3.12", "--implementation", "cp", *plat, "-d", str(wheels), *specs], check=True, timeout=timeout)
    if model_dir is None:
        sys.path.insert(0, str(SRC))
        from sftune.model.loading import resolve_model

        model_dir = resolve_model("default")
    write_skeleton(Path(model_dir), carry / SKELETON)
    return [str(p) for p in sorted(wheels.iterdir())] + [str(carry / SKELETON)]


def write_skeleton(model_dir: Path, tarball: Path) -> Path:
    """A model folder without its weights (config, tokenizer, chat template), gzipped: ~1 MB for SmolLM2."""
    with tarfile.open(tarball, "w:gz") as tar:
        for f in sorted(model_dir.iterdir()):
            if f.is_file() and f.suffix in (".json", ".jinja", ".txt", ".model") and f.name != "sftune_converted.json":
                tar.add(f, arcname=f.name)
    return tarball


def travel_mib(carry: Path = CARRY) -> float:
    """MiB that travel to the GPU machine: the carry folder plus the files git tracks (limit: 64)."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True).stdout.split("\0")
    files = [REPO / f for f in tracked if f] + [f for f in carry.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


def materialize_skeleton(tarball: Path, out: Path, seed: int = 0) -> Path:
    """A loadable model folder from a skeleton: the architecture with random weights (seeded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    skel = out.with_name(out.name + "-skeleton")
    shutil.rmtree(skel, ignore_errors=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(skel, filter="data")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(skel), dtype=torch.float32)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(skel).save_pretrained(out)
    return out


def free_gpu_memory() -> None:
    """Drop what the last check left on the GPU, so the next one's peak memory is its own."""
    import gc

    import torch

    gc.collect()
    torch.cuda.empty_cache()


def gpu_processes() -> str:
    """nvidia-ml-py's list of processes on the GPU (informative only)."""
    try:
        import torch

        return torch.cuda.list_gpu_processes()
    except Exception as e:  # noqa: BLE001 - informative only
        return f"unknown ({type(e).__name__})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- a trained model against its reloaded copy
def saved_dtypes(folder: Path) -> set[str]:
    """The dtypes stored in a folder's safetensors files ("F32", "BF16", ...), read from their headers."""
    from safetensors import safe_open

    out = set()
    for f in folder.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as st:
            out |= {st.get_slice(k).get_dtype() for k in st.keys()}
    return out


def trained_weights(model, method: str) -> dict:
    """The tensors training changes, as CPU float32 copies: every weight (full), else the LoRA adapters."""
    return {k: v.detach().float().cpu() for k, v in model.named_parameters() if method == "full" or "lora_" in k}


def max_rel_diff(a: dict, b: dict) -> float:
    """The largest ``max|a - b| / max|a|`` over the tensors both hold."""
    keys = a.keys() & b.keys()
    if not keys:
        raise RuntimeError(f"no weight names in common (e.g. {next(iter(a), None)} vs {next(iter(b), None)})")
    return max((a[k] - b[k]).abs().max().item() / max(a[k].abs().max().item(), 1e-12) for k in keys)


def probe_batch(model_dir):
    """A fixed padded batch of two short texts, to compare a model in memory with its reloaded copy."""
    from sftune.model.loading import load_tokenizer

    tok = load_tokenizer(model_dir)  # with a pad token, as in training
    texts = ["What is the capital of France? The capital of France is Paris.", "Write a haiku about the sea."]
    b = tok(texts, return_tensors="pt", padding=True)
    b["labels"] = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
    return b


def probe_loss(model, batch, precision) -> float:
    """The loss of ``batch`` under the autocast of ``precision`` (bf16, fp16, fp32), on the model's device."""
    import torch

    dev = next(p for p in model.parameters()).device
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    with torch.no_grad(), torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        return model(**{k: v.to(dev) for k, v in batch.items()}).loss.float().item()


# ---------------------------------------------------------------- packed = unpacked
def random_rows(n: int = 12, seed: int = 0, lo: int = 16, hi: int = 300, vocab: int = 1000) -> list[dict]:
    """``n`` samples of random tokens, each with a random prompt (label -100) and a trained answer."""
    import random

    rnd = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rnd.randint(lo, hi)
        ids = [rnd.randrange(3, vocab) for _ in range(k)]
        prompt = rnd.randint(1, k - 1)
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return rows


def packed_vs_unpacked(model, rows: list[dict], max_length: int, device: str = "cpu", autocast=None) -> dict:
    """Loss and gradients of ``rows`` one sample per pass, and packed (``sftune.data.packing``).

    Both are normalised by the same trained-token count, as the Trainer does, so they are equal
    up to rounding. ``loss_rel`` is the relative loss difference and ``grad_rel`` the largest
    ``|g_packed - g_unpacked| / |g_unpacked|`` over parameter tensors. ``leak_loss_rel`` and
    ``leak_grad_rel`` are the control: the same packed rows with an all-ones attention mask, i.e.
    attention across sample boundaries, which the tolerance must tell apart. (The loss of a
    randomly initialised model hardly notices such a leak; its gradients do.)
    """
    import torch

    from sftune.data.packing import PackingCollator, pack_rows

    n_items = sum(sum(t != -100 for t in r["labels"][1:]) for r in rows)
    amp = torch.autocast(device.split(":")[0], dtype=autocast, enabled=autocast is not None)

    def run(batches):
        model.zero_grad(set_to_none=True)
        total = 0.0
        for b in batches:
            b = {k: v.to(device) for k, v in b.items()}
            with amp:  # use_cache=False: with a cache transformers does not look for packed rows
                loss = model(**b, num_items_in_batch=n_items, use_cache=False).loss
            loss.backward()
            total += loss.item()
        return total, {k: p.grad.float().clone() for k, p in model.named_parameters() if p.grad is not None}

    single = [{"input_ids": torch.tensor([r["input_ids"]]), "labels": torch.tensor([r["labels"]])} for r in rows]
    loss_u, g_u = run(single)
    bins = pack_rows(rows, max_length)
    packed = PackingCollator(pad_token_id=0)([[rows[i] for i in b] for b in bins])
    loss_p, g_p = run([packed])
    leaky = {**packed, "attention_mask": torch.ones_like(packed["input_ids"])}
    del leaky["position_ids"]  # an ordinary causal row: every token sees the samples before it
    loss_leak, g_leak = run([leaky])
    model.zero_grad(set_to_none=True)

    def rel(g):  # the worst parameter tensor
        return max((g[k] - g_u[k]).norm().item() / max(g_u[k].norm().item(), 1e-12) for k in g_u)

    grad_rel = rel(g_p)
    return {
        "samples": len(rows), "packed_rows": len(bins), "trained_tokens": int(n_items),
        "loss_unpacked": loss_u, "loss_packed": loss_p, "loss_rel": abs(loss_p - loss_u) / abs(loss_u),
        "grad_rel": grad_rel, "same_grad_tensors": sorted(g_p) == sorted(g_u),
        "leak_loss_rel": abs(loss_leak - loss_u) / abs(loss_u), "leak_grad_rel": rel(g_leak),
    }
