"""Make ``import open_clip`` work with the CPU build of torch.

The only torchvision wheel that accepts torch 2.13.0 is a CUDA build. Its compiled extension
(``torchvision/_C.so``) cannot load without the CUDA libraries, so the operators it would
register are missing and ``import torchvision`` dies at
``@torch.library.register_fake("torchvision::nms")`` with
``RuntimeError: operator torchvision::nms does not exist``.

open_clip only needs ``torchvision.transforms``, which is pure Python. Declaring the schemas of
the two operators that torchvision's import-time code refers to (``nms`` and ``qnms``) is
enough for the import to succeed; calling them would still fail, which is fine because nothing
here uses ``torchvision.ops``. Images are decoded with Pillow, never with ``torchvision.io``.

When the compiled extension does load (a CUDA machine), nothing is declared.
"""

import threading

_lock = threading.Lock()
_done = False
_library = None  # keep the Library object alive: its definitions vanish when it is collected


def ensure_torchvision_importable() -> None:
    """Idempotent; call before importing torchvision or open_clip."""
    global _done, _library
    with _lock:
        if _done:
            return
        import torch

        if not _extension_loads():
            lib = torch.library.Library("torchvision", "DEF")
            lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _library = lib
        _done = True


def _extension_loads() -> bool:
    import importlib.util

    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    from pathlib import Path

    for folder in spec.submodule_search_locations:
        for candidate in Path(folder).glob("_C*.so"):
            try:
                torch.ops.load_library(str(candidate))
                return True
            except OSError:
                return False
    return False
