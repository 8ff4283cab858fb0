from django.core.management.base import BaseCommand, CommandError

from gallery.engine import embedder
from gallery.engine.onnx_models import onnx_export, storage_prefix
from indexer.embedding import ModelLoadError, get_embedder
from indexer.onnx_export import INT8_VARIANTS


class Command(BaseCommand):
    help = (
        "Export the configured OpenCLIP model to ONNX into storage: fp32, and int8 (unless --no-int8), "
        "keeping per tower the int8 variant that agrees with torch at the best speed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-int8", action="store_true", help="skip the int8-quantized models")
        parser.add_argument(
            "--int8-variants", default=",".join(INT8_VARIANTS),
            help=f"int8 variants to try, comma-separated (default: all of {', '.join(INT8_VARIANTS)})",
        )

    def handle(self, *args, no_int8, int8_variants, **options):
        spec = embedder.model_spec().as_torch()
        variants = [v.strip() for v in int8_variants.split(",") if v.strip()]
        unknown = set(variants) - set(INT8_VARIANTS)
        if unknown:
            raise CommandError(f"Unknown int8 variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(INT8_VARIANTS)}.")
        try:
            model = get_embedder(spec)
            self.stdout.write(f"Exporting {model.model_id} (opset 18)...")
            manifest = onnx_export(embedder=model, int8=not no_int8, variants=variants)
        except (ModelLoadError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if manifest["int8_variants"]:
            self.stdout.write("int8 variants (agreement with torch on held-out photos and texts; speed on this CPU):")
            self.stdout.write("| tower | variant | ms | min cosine | top-5 | passes | kept |")
            self.stdout.write("| ----- | ------- | -- | ---------- | ----- | ------ | ---- |")
            for row in manifest["int8_variants"]:
                self.stdout.write(
                    f"| {row['tower']} | {row['variant']} | {row['ms']:.2f} | {row['min_cosine']:.4f} | {row['top_k']:.2f} "
                    f"| {'yes' if row['passes'] else 'no'} | {'kept' if row['kept'] else ''} |"
                )
        self.stdout.write(self.style.SUCCESS(
            f"Stored {', '.join(manifest['files'])} and manifest.json under {storage_prefix(spec)}/ "
            f"({' and '.join(manifest['precisions'])}). Compare the runtimes with `manage.py runtime --measure`."
        ))
