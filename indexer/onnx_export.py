"""Export an OpenCLIP model's towers to ONNX: fp32, and the best int8 variant per tower.

The folder holds everything a torch-free process needs (:mod:`indexer.embedding.onnx_backend`):
``image.onnx``/``text.onnx`` (fp32), ``image-int8.onnx``/``text-int8.onnx``, the tokenizer's
vocabulary, ``reference.npz`` (a few photos, cropped to the model's input, and texts, with the
torch model's vectors of them: any host can measure a runtime's agreement with torch), and
``manifest.json`` (the torch model's id, preprocessing, tokenizer, int8 variants tried with their
figures, and a checksum per file).

int8 variants (each tower picks its own): ``dynamic`` (weights per tensor, activations
quantized on the fly: ONNX Runtime's default), ``dynamic-per-channel`` (a scale per output
channel), ``dynamic-keep-fp32`` (per channel, and the MatMuls whose outputs lose most to
quantization stay fp32), ``static`` (QDQ, per channel, activation ranges calibrated on the
photos given). The kept one passes the agreement rule (:mod:`indexer.embedding.agreement`) on
held-out inputs and is the fastest of those that pass; if none passes, the most faithful.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from indexer.embedding.agreement import agreement
from indexer.embedding.onnx_backend import FORMAT, MANIFEST, REFERENCE, TOWER_FILES, new_session
from indexer.embedding.tokenizer import VOCAB_FILE, open_clip_vocab_file
from indexer.index import file_sha256

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

    from indexer.embedding.torch_backend import TorchEmbedder

logger = logging.getLogger(__name__)

OPSET = 18
INT8_VARIANTS = ("dynamic", "dynamic-per-channel", "dynamic-keep-fp32", "static")
KEEP_FP32_SHARE = 0.1  # of the quantizable MatMuls, the most damaged ones stay fp32
# Texts for the reference vectors and the text tower's calibration: queries people type.
DEFAULT_TEXTS = (
    "a photo of a cat", "a dog running on the beach", "an astronaut in a spacesuit", "a cup of coffee",
    "a red bicycle", "mountains at sunset", "a bowl of salad", "children playing football", "a city street at night",
    "an old black and white photo", "a close-up of a flower", "a plate of sushi", "a rocket launch", "coins on a table",
    "a snowy forest", "a portrait of a woman smiling", "a car parked in front of a house", "a boat on a lake",
    "the surface of the moon", "a page of handwritten text", "birthday cake with candles", "a horse in a field",
    "a brick wall", "people dancing at a wedding",
)


@dataclass
class VariantReport:
    tower: str
    variant: str
    ms: float  # text: one query; image: per image in a batch of 8
    min_cosine: float
    top_k: float
    passes: bool
    kept: bool = False
    fp32_nodes: int = 0


def export_onnx(
    embedder: TorchEmbedder,
    out_dir: Path,
    *,
    photos: Sequence[PILImage] = (),
    texts: Sequence[str] = DEFAULT_TEXTS,
    int8: bool = True,
    variants: Sequence[str] = INT8_VARIANTS,
) -> dict:
    """Write the export of ``embedder`` (a torch embedder) into ``out_dir``; returns the manifest.

    ``photos`` (a few dozen of the gallery's own) calibrate and check the int8 towers; without
    them, images drawn from noise stand in (enough for the tests, not for real weights)."""
    import torch
    from torch.export import Dim

    if embedder.is_random and not embedder.spec.is_random:
        raise ValueError("the configured weights did not load (random fallback); export needs the real model")
    model = embedder.model.float().cpu().eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer_entry(embedder, out_dir)
    # A batch of at least 2 in the example: a batch-1 example silently fixes the batch size at 1.
    example_images = torch.randn(2, 3, embedder.image_size, embedder.image_size)
    example_tokens = embedder.tokenizer(["a photo", "a drawing"])
    # One self-contained file per tower (every CLIP tower is far below ONNX's 2 GB limit).
    options = {"opset_version": OPSET, "dynamo": True, "dynamic_shapes": ({0: Dim("batch")},), "external_data": False}
    fp32_image, fp32_text = (out_dir / name for name in TOWER_FILES["fp32"])
    torch.onnx.export(_tower(model.encode_image), (example_images,), str(fp32_image), **options)
    torch.onnx.export(_tower(model.encode_text), (example_tokens,), str(fp32_text), **options)

    crops = _reference_crops(embedder, photos)
    inputs = {
        "image": np.stack([embedder.preprocess(crop) for crop in crops]),
        "text": embedder.tokenizer(list(texts)).numpy(),
    }
    reference = {"image": embedder.encode_image_batch(inputs["image"]), "text": embedder.encode_texts(list(texts))}
    np.savez_compressed(
        out_dir / REFERENCE,
        pixels=np.stack([np.asarray(crop) for crop in crops]),
        texts=np.asarray(list(texts)),
        image_vectors=reference["image"],
        text_vectors=reference["text"],
    )
    precisions, reports = ["fp32"], []
    if int8:
        reports = _export_int8(out_dir, inputs, reference, variants)
        precisions.append("int8")
    manifest = {
        "format": FORMAT,
        "model_id": embedder.model_id,
        "weights": embedder.spec.pretrained if not embedder.spec.is_checkpoint_file else embedder.weights_id,
        "opset": OPSET,
        "precisions": precisions,
        "dim": embedder.dim,
        "image_size": embedder.image_size,
        "preprocess": _jsonable(embedder.preprocess_cfg),
        "tokenizer": tokenizer,
        "int8_variants": [asdict(report) for report in reports],
        "files": {
            name: file_sha256(out_dir / name)
            for name in (*[n for p in precisions for n in TOWER_FILES[p]], tokenizer["vocab"], REFERENCE)
        },
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def manifest_files(manifest: dict) -> tuple[str, ...]:
    """Every file of an export, the manifest last (it marks a complete copy)."""
    return (*manifest["files"], MANIFEST)


def _tokenizer_entry(embedder: TorchEmbedder, out_dir: Path) -> dict:
    """Copy the vocabulary next to the towers, after checking that the model's tokenizer is the
    plain CLIP BPE tokenizer that :mod:`indexer.embedding.tokenizer` reproduces."""
    tokenizer = embedder.tokenizer
    plain = (
        type(tokenizer).__name__ == "SimpleTokenizer"
        and getattr(tokenizer, "reduction_fn", None) is None
        and getattr(tokenizer.clean_fn, "__name__", "") == "_clean_lower"
        and tokenizer.vocab_size == 49408
    )
    vocab = open_clip_vocab_file()
    if not plain or vocab is None:
        raise ValueError(
            f"{embedder.spec.model} uses a tokenizer ({type(tokenizer).__name__}) that the ONNX runtimes do not "
            "reproduce; stay on CLIP_RUNTIME=torch for this model."
        )
    shutil.copyfile(vocab, out_dir / VOCAB_FILE)
    return {"kind": "clip-bpe", "vocab": VOCAB_FILE, "context_length": int(tokenizer.context_length)}


def _reference_crops(embedder: TorchEmbedder, photos: Sequence[PILImage]) -> list[PILImage]:
    """The photos as the model sees them before normalising: resized and centre-cropped RGB."""
    from PIL import Image

    if not photos:
        rng = np.random.default_rng(0)
        photos = [
            Image.fromarray(rng.integers(0, 256, (embedder.image_size, embedder.image_size, 3), dtype=np.uint8))
            for _ in range(8)
        ]
    from indexer.embedding.preprocess import PreprocessConfig, Preprocessor

    crop = Preprocessor(PreprocessConfig.from_dict(embedder.preprocess_cfg)).crop
    return [crop(photo.convert("RGB")) for photo in photos]


def _export_int8(out_dir: Path, inputs: dict, reference: dict, variants: Sequence[str]) -> list[VariantReport]:
    """Each variant of each tower into a scratch folder; the kept one becomes ``<tower>-int8.onnx``."""
    scratch = out_dir / "int8-variants"
    scratch.mkdir(exist_ok=True)
    reports = []
    try:
        for tower, fp32_name, int8_name in zip(("image", "text"), TOWER_FILES["fp32"], TOWER_FILES["int8"]):
            source = out_dir / fp32_name
            # half the inputs calibrate, the other half judge (all of them if there are few)
            calibrate, judge = _split(len(inputs[tower]))
            candidates = []
            for variant in variants:
                target = scratch / f"{tower}-{variant}.onnx"
                started = time.perf_counter()
                fp32_nodes = _quantize(variant, source, target, inputs[tower][calibrate])
                logger.info("int8 %s tower, %s: quantized in %.0f s", tower, variant, time.perf_counter() - started)
                session = new_session(target)
                vectors = _run(session, inputs[tower][judge])
                # text queries search the torch image vectors: what a switched web tier does
                images = (reference["image"], reference["image"]) if tower == "text" else None
                score = agreement(reference[tower][judge], vectors, images=images)
                report = VariantReport(tower, variant, 0.0, score.min_cosine, score.top_k, score.passes, fp32_nodes=fp32_nodes)
                candidates.append((report, target, session))
            _time_variants(candidates, tower, inputs[tower])
            reports += [report for report, _, _ in candidates]
            passing = [c for c in candidates if c[0].passes]
            best = min(passing, key=lambda c: c[0].ms) if passing else max(candidates, key=lambda c: c[0].min_cosine)
            best[0].kept = True
            shutil.copyfile(best[1], out_dir / int8_name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return reports


def _time_variants(candidates: list, tower: str, inputs: np.ndarray, rounds: int = 5) -> None:
    """Median ms of one text query, or per image of a batch of 8; the variants take turns, so a
    busy neighbour slows them alike."""
    batch = inputs[:1] if tower == "text" else np.resize(inputs, (8, *inputs.shape[1:]))
    times = {id(report): [] for report, _, _ in candidates}
    for round_ in range(rounds + 1):
        for report, _, session in candidates:
            started = time.perf_counter()
            _run(session, batch)
            if round_:  # the first round warms up
                times[id(report)].append(time.perf_counter() - started)
    for report, _, _ in candidates:
        report.ms = float(np.median(times[id(report)]) * 1000 / len(batch))


def _split(n: int) -> tuple[slice, slice]:
    if n < 8:
        return slice(None), slice(None)
    return slice(0, None, 2), slice(1, None, 2)


def _quantize(variant: str, source: Path, target: Path, calibration: np.ndarray) -> int:
    """Write ``variant`` of ``source`` to ``target``; returns how many MatMuls stayed fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if variant == "dynamic":
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        return 0
    if variant == "dynamic-per-channel":
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
        return 0
    if variant == "dynamic-keep-fp32":
        keep = _most_damaged_matmuls(source, calibration, KEEP_FP32_SHARE)
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=keep)
        return len(keep)
    if variant == "static":
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

        # Only the layers with constant weights: quantizing attention's activation products or
        # the layer norms statically wrecks the text tower.
        weighted = [node.name for node in _weighted_nodes(_load(source))]
        quantize_static(
            str(source), str(target), _Reader(source, calibration), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            nodes_to_quantize=weighted, extra_options={"CalibMovingAverage": True},
        )
        return 0
    raise ValueError(f"unknown int8 variant {variant!r}; choose from {', '.join(INT8_VARIANTS)}")


class _Reader:
    """onnxruntime's CalibrationDataReader: one input at a time."""

    def __init__(self, model: Path, data: np.ndarray):
        import onnx

        self._name = onnx.load(str(model), load_external_data=False).graph.input[0].name
        self._rows = iter(data)

    def get_next(self):
        row = next(self._rows, None)
        return None if row is None else {self._name: row[None]}

    def rewind(self):  # pragma: no cover - called by some ORT versions
        pass


def _most_damaged_matmuls(source: Path, calibration: np.ndarray, share: float) -> list[str]:
    """Names of the MatMuls (with a constant weight) whose output changes most when their input is
    quantized to uint8 per tensor and their weight to int8 per channel, as dynamic quantization
    does: their inputs are captured on the calibration data, and each layer is simulated alone."""
    import onnx
    import onnxruntime
    from onnx import numpy_helper

    model = _load(source)
    weights = {init.name: init for init in model.graph.initializer}
    matmuls = [node for node in _weighted_nodes(model) if node.op_type == "MatMul"]
    if not matmuls:
        return []
    existing = {output.name for output in model.graph.output}
    for name in dict.fromkeys(node.input[0] for node in matmuls):
        if name not in existing:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = [node.input[0] for node in matmuls]
    captured = session.run(wanted, {session.get_inputs()[0].name: calibration[: min(len(calibration), 8)]})
    errors = []
    for node, x in zip(matmuls, captured):
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        x = x.reshape(-1, x.shape[-1]).astype(np.float32)
        exact = x @ w
        errors.append((float(np.linalg.norm(_fake_quant_u8(x) @ _fake_quant_s8_columns(w) - exact) / (np.linalg.norm(exact) + 1e-12)), node.name))
    errors.sort(reverse=True)
    return [name for _, name in errors[: max(1, round(share * len(errors)))]]


def _load(path: Path):
    import onnx

    return onnx.load(str(path))


def _weighted_nodes(model) -> list:
    """MatMuls, Gemms and Convs whose weight is a constant of the model, and lookups (Gather) in a
    constant table: the token embedding is two thirds of the text tower's bytes."""
    weights = {init.name for init in model.graph.initializer}
    return [
        node for node in model.graph.node
        if (node.op_type in ("MatMul", "Gemm", "Conv") and len(node.input) > 1 and node.input[1] in weights)
        or (node.op_type == "Gather" and node.input[0] in weights)
    ]


def _fake_quant_u8(x: np.ndarray) -> np.ndarray:
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (high - low) / 255 or 1.0
    zero = np.round(-low / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def _fake_quant_s8_columns(w: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.abs(w).max(axis=0, keepdims=True), 1e-12) / 127
    return np.clip(np.round(w / scale), -127, 127) * scale


def _run(session, inputs: np.ndarray) -> np.ndarray:
    from indexer.embedding.base import normalise

    (out,) = session.run(None, {session.get_inputs()[0].name: inputs})
    return normalise(out)


def _tower(encode):
    """One encoder as a module of its own (in eval mode), so each tower exports alone."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.owner = encode.__self__

        def forward(self, x):
            return encode(x)

    return Tower().eval()


def _jsonable(cfg: dict) -> dict:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in dict(cfg).items()}
