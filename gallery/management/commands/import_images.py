from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from gallery.catalogue.uploads import image_create
from gallery.errors import GalleryError
from indexer.images import ALLOWED_FORMATS
from indexer.images import IMAGE_SUFFIXES as SUFFIXES


class Command(BaseCommand):
    help = "Import image files and folders (recursively). Duplicates and bad files are skipped with a reason."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", type=Path, help="files or folders")
        parser.add_argument("--all-files", action="store_true", help="try every file, not only image suffixes")

    def handle(self, *args, paths, all_files, **options):
        files = []
        for path in paths:
            if path.is_dir():
                files += sorted(p for p in path.rglob("*") if p.is_file() and (all_files or p.suffix.lower() in SUFFIXES))
            elif path.is_file():
                files.append(path)
            else:
                raise CommandError(f"{path} does not exist")
        added = present = rejected = 0
        for path in tqdm(files, desc="Importing", unit="file", disable=options["verbosity"] < 1):
            try:
                with path.open("rb") as handle:
                    image, created = image_create(file=handle, filename=path.name)
            except (GalleryError, OSError) as exc:
                rejected += 1
                tqdm.write(self.style.WARNING(f"skipped {path}: {exc}"))
                continue
            if created:
                added += 1
            else:
                present += 1
                if options["verbosity"] > 1:
                    tqdm.write(f"already present: {path} (image {image.pk})")
        self.stdout.write(
            self.style.SUCCESS(f"{added} added, {present} already present, {rejected} skipped.")
        )
        if not files:
            self.stdout.write(f"No image files found (looked for {', '.join(sorted(SUFFIXES))}; "
                              f"formats {', '.join(sorted(ALLOWED_FORMATS))}).")
