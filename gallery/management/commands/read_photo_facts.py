from django.core.management.base import BaseCommand
from tqdm import tqdm

from gallery.catalogue.photo_facts import images_read_photo_facts
from gallery.models import Image


class Command(BaseCommand):
    help = (
        "Read the date taken, camera, lens, place and orientation of images uploaded before these "
        "were read at upload, from their stored originals (resumable: run it again after a stop)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=200)

    def handle(self, *args, batch_size, **options):
        unread = Image.objects.filter(taken_at_source=Image.DateSource.UNREAD).count()
        with tqdm(total=unread, desc="Reading", unit="image", disable=options["verbosity"] < 1) as bar:
            done = images_read_photo_facts(batch_size=batch_size, progress=bar.update)
        dated = Image.objects.filter(taken_at_source=Image.DateSource.CAMERA).count()
        self.stdout.write(self.style.SUCCESS(f"Read {done} images; {dated} in the gallery carry the date they were taken."))
