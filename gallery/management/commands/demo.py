from django.core.management.base import BaseCommand, CommandError

from gallery import clip
from gallery.indexing import index_refresh
from gallery.samples import available_samples
from gallery.uploads import UploadRejected, image_create
from indexer.embedding import ModelLoadError, get_embedder


class Command(BaseCommand):
    help = "Import the sample photographs that ship in installed packages, embed them and build the index."

    def handle(self, *args, **options):
        try:
            get_embedder(clip.model_spec())
        except ModelLoadError as exc:
            self.stdout.write(self.style.WARNING(
                f"{exc}\nThe demo continues with RANDOM weights: search works end to end, but results "
                "mean nothing until real weights are configured (the pages say so too)."
            ))
            # Registers the random model under the configured spec for the rest of this process.
            get_embedder(clip.model_spec(), fallback_to_random=True)
        samples = available_samples()
        if not samples:
            raise CommandError("No sample photographs found: install scikit-image and scikit-learn.")
        added = 0
        for sample in samples:
            try:
                with sample.path.open("rb") as handle:
                    _, created = image_create(file=handle, filename=sample.filename, title=sample.title, description=sample.description)
            except UploadRejected as exc:
                self.stdout.write(self.style.WARNING(f"skipped {sample.filename}: {exc}"))
                continue
            added += created
        self.stdout.write(f"{added} sample photos added ({len(samples) - added} were already there).")
        report = index_refresh(progress=options["verbosity"] > 0)
        if report.published:
            self.stdout.write(self.style.SUCCESS(
                f"Index {report.published.version} published with {report.published.item_count} images."
            ))
        else:
            self.stdout.write("The index was already up to date.")
        self.stdout.write('Try: python manage.py search "a photo of a cat"')
