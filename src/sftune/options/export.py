"""How ``sftune export`` writes GGUF, and how ``sftune ui`` is served."""

from __future__ import annotations

from typing import ClassVar

from pydantic import model_validator

from .base import OptionGroup


class ExportOptions(OptionGroup):
    """GGUF export for llama.cpp, Ollama and LM Studio."""

    group_name: ClassVar[str] = "export"

    output: str
    """The .gguf file to write (written atomically; an existing file needs --force)."""
    quant: str = "f16"
    """f32, f16, bf16, q8_0, q5_1, q5_0, q4_1, q4_0; a K-quant (q4_k_m, q6_k, ...) writes f16 and prints the llama-quantize command that finishes the job."""
    ollama: bool = False
    """Also write an Ollama Modelfile (FROM, TEMPLATE, stop tokens, parameters) next to the file and print the ollama create command."""
    adapter_only: bool = False
    """Write only the LoRA adapter, as a GGUF adapter for llama.cpp's --lora."""
    force: bool = False
    """Overwrite an existing output file."""
    name: str | None = None
    """Model name written into the file's metadata (default: the folder name)."""


class UIOptions(OptionGroup):
    """The local web app."""

    group_name: ClassVar[str] = "ui"

    host: str = "127.0.0.1"
    """Address to bind; anything but loopback needs --auth."""
    port: int = 7860
    """TCP port."""
    workdir: str | None = None
    """Confine every path typed in the page to this folder; runs are written to WORKDIR/runs."""
    auth: str | None = None
    """USER:PASSWORD required to open the page (needed for a non-loopback --host)."""
    share: bool = False
    """Ask Gradio for a public share link (off: the app stays on this machine)."""

    @model_validator(mode="after")
    def _port(self):
        if not 0 < self.port < 65536:
            raise ValueError("port must be in 1..65535")
        return self
