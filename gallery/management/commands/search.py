from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from gallery import search
from gallery.errors import GalleryError


class Command(BaseCommand):
    help = "Search the gallery by text or by an image file and print ranked results."

    def add_arguments(self, parser):
        parser.add_argument("text", nargs="?", default="", help="what to look for")
        parser.add_argument("--image", type=Path, help="search with this image file instead")
        parser.add_argument("-k", type=int, default=10, help="how many results (default 10)")

    def handle(self, *args, text, image, k, **options):
        if bool(text) == bool(image):
            raise CommandError('Give either a text query or --image FILE, e.g. search "a red bicycle".')
        try:
            if image:
                with image.open("rb") as handle:
                    query = search.SearchQuery.build(image_file=handle)
            else:
                query = search.text_query(text)
            hits = search.search(query)
        except GalleryError as exc:
            raise CommandError(exc.detail) from None
        except OSError as exc:  # the --image file
            raise CommandError(str(exc)) from None
        if not hits:
            self.stdout.write("No matches.")
        for hit in hits[:k]:
            score = "pinned" if hit.score is None else f"{hit.score:6.3f}"  # a curator's pin search did not rank
            self.stdout.write(f"{hit.rank:>3}  {score:>6}  #{hit.image.pk:<6} {hit.image}")
