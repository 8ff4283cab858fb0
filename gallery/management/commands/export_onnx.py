from django.core.management.base import BaseCommand, CommandError

from gallery import clip
from gallery.onnx_models import onnx_export, storage_prefix
from indexer.embedding import ModelLoadError, get_embedder


class Command(BaseCommand):
    help = "Export the configured OpenCLIP model to ONNX (fp32, and int8 unless --no-int8) into storage."

    def add_arguments(self, parser):
        parser.add_argument("--no-int8", action="store_true", help="skip the int8-quantized models")

    def handle(self, *args, no_int8, **options):
        spec = clip.model_spec().as_torch()
        try:
            embedder = get_embedder(spec)
        except ModelLoadError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Exporting {embedder.model_id} (opset 18)...")
        manifest = onnx_export(embedder=embedder, int8=not no_int8)
        self.stdout.write(self.style.SUCCESS(
            f"Stored {', '.join(manifest['files'])} and manifest.json under {storage_prefix(spec)}/ "
            f"({' and '.join(manifest['precisions'])}). Check them with `manage.py verify_onnx`."
        ))
