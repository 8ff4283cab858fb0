import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from gallery.catalogue.samples import available_samples
from gallery.catalogue.uploads import image_create
from gallery.engine import embedder
from gallery.errors import GalleryError, ModelUnavailable
from gallery.indexing import index_refresh


class Command(BaseCommand):
    help = "Import the sample photographs that ship in installed packages, embed them and build the index."

    def handle(self, *args, **options):
        try:
            embedder.embedder()
        except ModelUnavailable as exc:
            self.stdout.write(self.style.WARNING(
                f"{exc.detail}\nThe demo continues with RANDOM weights: search works end to end, but results "
                "mean nothing until real weights are configured (the pages say so too)."
            ))
            # Registers the random model under the configured spec for the rest of this process.
            embedder.embedder(fallback_to_random=True)
        samples = available_samples()
        if not samples:
            raise CommandError("No sample photographs found: install scikit-image and scikit-learn.")
        added = 0
        for sample in samples:
            try:
                with sample.path.open("rb") as handle:
                    _, created = image_create(file=handle, filename=sample.filename, title=sample.title, description=sample.description)
            except GalleryError as exc:
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
        self.stdout.write('Try: .venv/bin/python manage.py search "a photo of a cat"')
        self._ensure_account()

    def _ensure_account(self):
        """Uploading needs an account: the demo makes one curator, once, with a password kept
        beside the database (never a fixed one). The password is printed when it is made, and
        never again: `make run` and the container run this at every start, and logs are kept."""
        User = get_user_model()
        password_file = Path(settings.VAR_DIR) / "admin-password"
        if not User.objects.filter(is_superuser=True).exists():
            password = secrets.token_urlsafe(12)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
            User.objects.create_superuser("admin", password=password)
            self.stdout.write(f"Sign in as admin with the password {password} (printed this once; kept in {password_file}).")
        elif password_file.exists():
            self.stdout.write(f"Sign in as admin with the password kept in {password_file}.")
