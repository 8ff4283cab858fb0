"""The settings of a throw-away gallery for a benchmark: its database, media and caches in one
temporary folder, the model given, random weights (they cost what real ones do)."""

from __future__ import annotations


def scratch_settings(folder: str, *, model: str, config_dir: str = "") -> dict[str, str]:
    """Environment variables for ``webapp.settings``; set them before Django starts."""
    return {
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "GALLERY_VAR_DIR": folder,
        "DATABASE_URL": f"sqlite:///{folder}/db.sqlite3",
        "DJANGO_SECRET_KEY": "benchmark",
        "CLIP_MODEL": model,
        "CLIP_PRETRAINED": "random",
        "CLIP_MODEL_CONFIG_DIR": config_dir,
        "GALLERY_LOG_LEVEL": "WARNING",
    }
