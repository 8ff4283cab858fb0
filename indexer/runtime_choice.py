"""``CLIP_RUNTIME=auto``: measure each runtime on this CPU once, keep the fastest that agrees
with torch, and remember why.

Which runtime is fastest depends on the CPU more than on anything else: ONNX Runtime's int8
kernels need VNNI (or AMX) to beat fp32, and on an AVX2-only EPYC int8 was slower than torch
and failed the agreement rule. So each host measures, on the export's own reference inputs:
a text query's median latency, image throughput in batches of 8, and agreement with the torch
vectors the export carries (the rule of :mod:`indexer.embedding.agreement`; torch itself need
not be installed). The choice is kept in a JSON file with the figures, the CPU and the export
it was made for, and measured again when either changes.

A choice never mixes vector spaces: every vector records its runtime in its model id, so a host
that picks another runtime re-embeds rather than adding to an index of other vectors.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from indexer.embedding.agreement import MIN_COSINE, MIN_TOP_K, agreement, combined
from indexer.embedding.base import ONNX_PRECISIONS, TORCH, ModelLoadError, ModelSpec
from indexer.embedding.factory import load_embedder
from indexer.embedding.onnx_backend import MANIFEST, REFERENCE, ExportFiles, export_file
from indexer.files import write_atomically

logger = logging.getLogger(__name__)

CHOICE_FILE = "runtime-choice.json"
# The instruction sets that decide which kernels run: x86 vector widths and int8 dot products,
# AMX tiles, and on ARM NEON (asimd), its dot product and int8 matrix multiply.
RELEVANT_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
    "asimd", "asimddp", "i8mm", "sve",
)
TEXT_QUERIES = 5  # per round and runtime
IMAGE_BATCH = 8
ROUNDS = 3  # runtimes take turns, so a noisy neighbour slows all of them alike


@dataclass
class Figures:
    runtime: str
    text_p50_ms: float = 0.0
    images_per_s: float = 0.0
    min_cosine: float = 0.0
    top_k: float = 0.0
    passes: bool = False
    error: str = ""  # why it could not be measured


@dataclass
class Choice:
    runtime: str
    reason: str
    cpu: dict
    export: str  # the export's model id and creation time
    measured_at: str
    figures: list[Figures] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Choice:
        data = json.loads(text)
        data["figures"] = [Figures(**row) for row in data.get("figures", [])]
        return cls(**data)

    def table(self) -> str:
        """The figures as a Markdown table, with the CPU it was measured on."""
        lines = [
            f"CPU: {cpu_line(self.cpu)}",
            f"Export: {self.export}; measured {self.measured_at}",
            "",
            "| runtime | text p50 ms | images/s | min cosine to torch | top-5 agreement | passes |",
            "| ------- | ----------- | -------- | ------------------- | --------------- | ------ |",
        ]
        for row in self.figures:
            if row.error:
                lines.append(f"| {row.runtime} | - | - | - | - | {row.error} |")
            else:
                lines.append(
                    f"| {row.runtime} | {row.text_p50_ms:.1f} | {row.images_per_s:.1f} | {row.min_cosine:.4f} "
                    f"| {row.top_k:.2f} | {'yes' if row.passes else 'no'} |"
                )
        return "\n".join(lines)


def cpu_description() -> dict:
    """The CPU's model name, core count and relevant instruction sets (from /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "Hardware") and value.strip():
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:  # not Linux: the model name from platform is all there is
        pass
    return {
        "model": model,
        "arch": platform.machine(),
        "cores": os.cpu_count() or 1,
        "flags": [flag for flag in RELEVANT_FLAGS if flag in flags],
    }


def host_kind() -> str:
    """Names hosts that would measure alike: the same CPU, and the same runtimes installed."""
    import hashlib

    signature = json.dumps({"cpu": cpu_description(), "torch": torch_available()}, sort_keys=True)
    return hashlib.sha256(signature.encode()).hexdigest()[:16]


def cpu_line(cpu: dict) -> str:
    return f"{cpu['model']} ({cpu['arch']}, {cpu['cores']} cores; {' '.join(cpu['flags']) or 'no AVX2/AVX-512/VNNI/AMX/NEON'})"


def torch_available() -> bool:
    """Whether this install has the torch backend (the slim web tier has not)."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "open_clip"))


def choose_runtime(
    spec: ModelSpec, files: ExportFiles, state: Path, *, measure_again: bool = False, with_torch: bool | None = None
) -> Choice:
    """The kept choice for this CPU and export, or a new measurement (one process per host
    measures; the others wait for its result)."""
    manifest = json.loads(export_file(files, MANIFEST).read_text())
    export = f"{manifest['model_id']} exported {manifest['created_at']}"
    cpu = cpu_description()
    runtimes = [r for r in ONNX_PRECISIONS if ONNX_PRECISIONS[r] in manifest["precisions"]]
    if torch_available() if with_torch is None else with_torch:
        runtimes.insert(0, TORCH)
    state.parent.mkdir(parents=True, exist_ok=True)
    with open(state.parent / f".{state.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kept = None if measure_again else read_choice(state)
        if kept and kept.cpu == cpu and kept.export == export and sorted(f.runtime for f in kept.figures) == sorted(runtimes):
            return kept
        figures = measure(spec, files, runtimes)
        runtime, reason = pick(figures)
        choice = Choice(runtime, reason, cpu, export, datetime.now(timezone.utc).isoformat(timespec="seconds"), figures)
        write_atomically(state, choice.to_json())
    logger.info("CLIP_RUNTIME=auto chose %s: %s", runtime, reason)
    return choice


def read_choice(state: Path) -> Choice | None:
    try:
        return Choice.from_json(state.read_text())
    except (OSError, ValueError, TypeError):
        return None


def measure(spec: ModelSpec, files: ExportFiles, runtimes: list[str], *, rounds: int = ROUNDS) -> list[Figures]:
    """Each runtime's figures on the export's reference inputs, the runtimes taking turns."""
    from PIL import Image

    with np.load(export_file(files, REFERENCE)) as data:
        reference = {name: data[name] for name in data.files}
    crops = [Image.fromarray(pixels) for pixels in reference["pixels"]]
    texts = [str(text) for text in reference["texts"]]
    figures, embedders = {}, {}
    for runtime in runtimes:
        try:
            # not kept: a web process holds only the chosen runtime's model
            embedders[runtime] = load_embedder(spec.with_runtime(runtime), onnx_files=files)
        except (ModelLoadError, ImportError) as exc:
            figures[runtime] = Figures(runtime, error=str(exc)[:300])
    batches, text_times, image_times = {}, {r: [] for r in embedders}, {r: [] for r in embedders}
    for runtime, embedder in embedders.items():
        batch = np.stack([embedder.preprocess(crop) for crop in crops])
        image_vectors, text_vectors = embedder.encode_image_batch(batch), embedder.encode_texts(texts)  # also warms up
        score = combined(
            agreement(reference["image_vectors"], image_vectors),
            agreement(reference["text_vectors"], text_vectors, images=(reference["image_vectors"], image_vectors)),
        )
        figures[runtime] = Figures(runtime, min_cosine=score.min_cosine, top_k=score.top_k, passes=score.passes)
        batches[runtime] = np.resize(batch, (IMAGE_BATCH, *batch.shape[1:]))
    for round_ in range(rounds):
        for runtime, embedder in embedders.items():
            for n in range(TEXT_QUERIES):
                text = f"{texts[(round_ * TEXT_QUERIES + n) % len(texts)]} {round_}"
                started = time.perf_counter()
                embedder.encode_texts([text])
                text_times[runtime].append(time.perf_counter() - started)
            started = time.perf_counter()
            embedder.encode_image_batch(batches[runtime])
            image_times[runtime].append(time.perf_counter() - started)
    for runtime in embedders:
        figures[runtime].text_p50_ms = float(np.median(text_times[runtime]) * 1000)
        figures[runtime].images_per_s = float(IMAGE_BATCH / np.median(image_times[runtime]))
    return [figures[runtime] for runtime in runtimes]


def pick(figures: list[Figures]) -> tuple[str, str]:
    """The passing runtime with the smallest slowdown against the best of each measure (the
    geometric mean of text latency and image time), and a sentence saying why."""
    passing = [f for f in figures if f.passes and not f.error]
    failing = [f for f in figures if not f.passes or f.error]
    if not passing:
        return TORCH, "no runtime could be measured against the export's torch vectors; torch is the reference"
    best_text = min(f.text_p50_ms for f in passing)
    best_rate = max(f.images_per_s for f in passing)

    def slowdown(f: Figures) -> float:
        return float(np.sqrt((f.text_p50_ms / best_text) * (best_rate / f.images_per_s)))

    chosen = min(passing, key=slowdown)
    others = ", ".join(
        f"{f.runtime} {f.text_p50_ms:.1f} ms / {f.images_per_s:.1f} img/s" for f in passing if f is not chosen
    )
    reason = f"{chosen.runtime}: text query {chosen.text_p50_ms:.1f} ms, {chosen.images_per_s:.1f} images/s"
    reason += f" (others that agree with torch: {others})" if others else ""
    for f in failing:
        reason += (
            f"; {f.runtime} not usable: {f.error}" if f.error else
            f"; {f.runtime} fails the agreement rule (min cosine {f.min_cosine:.4f} < {MIN_COSINE} "
            f"or top-5 {f.top_k:.2f} < {MIN_TOP_K})"
        )
    return chosen.runtime, reason
