from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from gallery import indexing, uploads
from gallery.airflow_api import AirflowUnavailable
from gallery.models import Image, IndexVersion
from indexer.embedding import ModelLoadError


class ImageAddForm(forms.ModelForm):
    """Adding goes through the upload service: the same validation and dedupe as the web form."""

    upload = forms.FileField(label=_("Photo"))

    class Meta:
        model = Image
        fields = ["title", "description"]

    def clean_upload(self):
        upload = self.cleaned_data["upload"]
        try:
            uploads.validate_upload(file=upload)
        except uploads.UploadRejected as exc:
            raise forms.ValidationError(str(exc)) from None
        return upload


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["thumb", "__str__", "status", "hidden", "uploaded_at", "embedded_at", "embedding_model"]
    list_display_links = ["thumb", "__str__"]
    list_filter = ["status", "hidden", "embedding_model", "uploaded_at"]
    search_fields = ["title", "description", "=sha256"]
    actions = ["hide", "unhide", "reembed", "reindex_now"]
    readonly_fields = [
        "preview", "width", "height", "size_bytes", "sha256", "uploaded_at",
        "status", "error", "embedding_model", "embedded_at", "file", "thumbnail",
    ]
    fields = ["preview", "title", "description", "hidden", *readonly_fields[1:]]

    @admin.display(description=_("thumbnail"))
    def thumb(self, obj):
        return format_html('<img src="{}" alt="" style="height:4rem;width:4rem;object-fit:cover">', obj.thumbnail.url)

    @admin.display(description=_("preview"))
    def preview(self, obj):
        return format_html('<img src="{}" alt="" style="max-height:20rem">', obj.thumbnail.url)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ImageAddForm
            kwargs["fields"] = ["upload", "title", "description"]
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["upload", "title", "description"] if obj is None else self.fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            uploads.image_update(image=obj, title=obj.title, description=obj.description, hidden=obj.hidden)
            return
        image, created = uploads.image_create(
            file=form.cleaned_data["upload"], title=obj.title, description=obj.description
        )
        obj.__dict__.update(image.__dict__)  # the admin redirects to `obj`
        if not created:
            messages.info(request, _("This photo was already in the gallery; showing the existing one."))

    def delete_model(self, request, obj):
        uploads.image_delete(image=obj)

    def delete_queryset(self, request, queryset):
        for image in queryset:
            uploads.image_delete(image=image)

    @admin.action(description=_("Hide selected images from the gallery and search"))
    def hide(self, request, queryset):
        count = uploads.images_set_hidden(images=queryset, hidden=True)
        self.message_user(request, _("%d images hidden.") % count)

    @admin.action(description=_("Unhide selected images"))
    def unhide(self, request, queryset):
        count = uploads.images_set_hidden(images=queryset, hidden=False)
        self.message_user(request, _("%d images visible again.") % count)

    @admin.action(description=_("Re-embed selected images at the next index run"))
    def reembed(self, request, queryset):
        count = uploads.images_reembed(images=queryset)
        self.message_user(request, _("%d images queued for embedding.") % count)

    @admin.action(description=_("Reindex now (embed pending images and publish)"))
    def reindex_now(self, request, queryset):
        try:
            self.message_user(request, indexing.index_refresh_now(), messages.SUCCESS)
        except (AirflowUnavailable, ModelLoadError) as exc:
            self.message_user(request, str(exc), messages.ERROR)


@admin.register(IndexVersion)
class IndexVersionAdmin(admin.ModelAdmin):
    list_display = [
        "version", "is_current", "model", "item_count", "embedded_count", "embed_seconds", "build_seconds", "created_at",
    ]
    list_filter = ["is_current", "model"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
