from django.core.management.base import BaseCommand

from gallery.indexing.duplicates import images_hash_missing, near_duplicates_find


class Command(BaseCommand):
    help = (
        "Take the perceptual hashes of images uploaded before they existed (read from the stored "
        "originals), then look for near-duplicates among them with the new hashes."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=100)

    def handle(self, *args, batch_size, **options):
        hashed = images_hash_missing(batch_size=batch_size)
        groups = near_duplicates_find(image_ids=hashed) if hashed else []
        self.stdout.write(
            self.style.SUCCESS(f"Hashed {len(hashed)} images; {len(groups)} near-duplicate group(s) found or grown.")
        )
