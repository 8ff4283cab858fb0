import django.utils.timezone
from django.db import migrations, models
from django.db.models import F


def dates_from_uploads(apps, schema_editor):
    """Every row gets a date at once (the upload time, source "not read yet"); `manage.py
    read_photo_facts` then reads the originals' EXIF blocks."""
    apps.get_model("gallery", "Image").objects.filter(taken_at__isnull=True).update(taken_at=F("uploaded_at"))


class Migration(migrations.Migration):
    dependencies = [("gallery", "0008_fresh_segment_index")]

    operations = [
        migrations.AddField("image", "taken_at", models.DateTimeField(null=True, verbose_name="taken at")),
        migrations.RunPython(dates_from_uploads, migrations.RunPython.noop),
        migrations.AlterField("image", "taken_at", models.DateTimeField(default=django.utils.timezone.now, verbose_name="taken at")),
        migrations.AddField(
            "image",
            "taken_at_source",
            models.CharField(
                blank=True,
                choices=[("camera", "date taken"), ("upload", "upload time"), ("", "not read yet")],
                default="",
                editable=False,
                max_length=8,
                verbose_name="date source",
            ),
        ),
        migrations.AddField(
            "image",
            "taken_at_offset",
            models.SmallIntegerField(blank=True, editable=False, null=True, verbose_name="UTC offset of the date taken (minutes)"),
        ),
        migrations.AddField("image", "camera_make", models.CharField(blank=True, editable=False, max_length=100, verbose_name="camera make")),
        migrations.AddField("image", "camera_model", models.CharField(blank=True, editable=False, max_length=100, verbose_name="camera model")),
        migrations.AddField("image", "lens", models.CharField(blank=True, editable=False, max_length=100, verbose_name="lens")),
        migrations.AddField("image", "latitude", models.FloatField(blank=True, editable=False, null=True, verbose_name="latitude")),
        migrations.AddField("image", "longitude", models.FloatField(blank=True, editable=False, null=True, verbose_name="longitude")),
        migrations.AddField(
            "image", "exif_orientation", models.PositiveSmallIntegerField(blank=True, editable=False, null=True, verbose_name="EXIF orientation")
        ),
        migrations.AddIndex("image", models.Index(fields=["-taken_at", "-id"], name="image_timeline")),
    ]
