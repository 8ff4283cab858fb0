"""Real photographs that ship inside installed packages, for the demo and the relevance checks.

Each sample has a title and description for the gallery and a text query that should find it
first with real CLIP weights.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    package_dir: str  # import path of the package folder that holds the file
    filename: str
    title: str
    description: str
    query: str

    @property
    def path(self) -> Path | None:
        spec = importlib.util.find_spec(self.package_dir)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.filename
        return path if path.is_file() else None


SAMPLES = [
    Sample("skimage.data", "astronaut.png", "Astronaut", "Astronaut Eileen Collins in her flight suit.", "an astronaut in a spacesuit"),
    Sample("skimage.data", "chelsea.png", "Chelsea the cat", "A tabby cat looking to the side.", "a photo of a cat"),
    Sample("skimage.data", "coffee.png", "Coffee", "A cup of coffee on a saucer.", "a cup of coffee"),
    Sample("skimage.data", "rocket.jpg", "Rocket", "A rocket on its launch pad.", "a rocket on a launch pad"),
    Sample("skimage.data", "hubble_deep_field.jpg", "Hubble Deep Field", "Thousands of galaxies seen by the Hubble telescope.", "galaxies in deep space"),
    Sample("skimage.data", "retina.jpg", "Retina", "Fundus photograph of a human retina.", "a medical photo of the retina of an eye"),
    Sample("skimage.data", "motorcycle_left.png", "Motorcycle", "A motorcycle standing in a garage.", "a motorcycle"),
    Sample("skimage.data", "camera.png", "Cameraman", "A man with a camera on a tripod, in black and white.", "a man with a camera on a tripod"),
    Sample("skimage.data", "coins.png", "Coins", "Old Greek coins, in black and white.", "old coins"),
    Sample("skimage.data", "moon.png", "Moon", "Craters on the surface of the moon.", "the surface of the moon"),
    Sample("skimage.data", "horse.png", "Horse", "Silhouette of a horse.", "the silhouette of a horse"),
    Sample("skimage.data", "brick.png", "Brick wall", "A wall of bricks.", "a brick wall"),
    Sample("skimage.data", "grass.png", "Grass", "A close-up of grass.", "a close-up of grass"),
    Sample("skimage.data", "gravel.png", "Gravel", "A close-up of gravel.", "gravel stones"),
    Sample("skimage.data", "page.png", "Page of text", "A scanned page of a book.", "a scanned page of text"),
    Sample("skimage.data", "clock_motion.png", "Clock", "A wall clock, blurred by motion.", "a clock"),
    Sample("skimage.data", "ihc.png", "Stained tissue", "Immunohistochemistry: stained tissue under a microscope.", "stained tissue under a microscope"),
    Sample("skimage.data", "chessboard_RGB.png", "Chessboard", "A chessboard pattern.", "a checkerboard pattern"),
    Sample("skimage.data", "logo.png", "scikit-image logo", "The scikit-image logo.", "a logo"),
    Sample("sklearn.datasets.images", "china.jpg", "Chinese temple", "A Chinese temple among trees.", "a chinese temple"),
    Sample("sklearn.datasets.images", "flower.jpg", "Flower", "A pink flower in close-up.", "a pink flower"),
]


def available_samples() -> list[Sample]:
    return [sample for sample in SAMPLES if sample.path is not None]
