"""The catalogue in the admin: images (upload, curate, tag, hide, delete) and tags."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import Count
from django.shortcuts import redirect
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from gallery import indexing
from gallery.admin.permissions import without_error_unless_curator
from gallery.catalogue import access, curation, tags, uploads
from gallery.errors import GalleryError
from gallery.models import Image, Tag


class ImageAddForm(forms.ModelForm):
    """Adding goes through the upload service, once: the same validation and dedupe as every
    other way in. The image is created while the form is cleaned, so a refused upload is a form
    error beside the file field (the admin's way to show it)."""

    upload = forms.FileField(label=_("Photo"))
    user = None  # who adds: set by ImageAdmin.get_form

    class Meta:
        model = Image
        fields = ["title", "description", "tags"]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            self.image, self.created = uploads.image_create(
                file=data["upload"],
                title=data.get("title", ""),
                description=data.get("description", ""),
                tags=[tag.name for tag in data.get("tags") or []],
            )
        except GalleryError as exc:
            self.add_error("upload", str(exc))
            return data
        self.image.created_now = self.created
        if not self.created and not access.can_see(self.user, self.image):
            # The same bytes as a hidden image: say no more than the pages and the API do.
            self.add_error("upload", _("This photo is already in the gallery."))
        return data

    def save_m2m(self):
        """Nothing left to save: the upload service stored the image and its relations."""


class TagActionForm(ActionForm):
    """The action bar with a tag name, for the bulk add / remove tag actions."""

    tag = forms.CharField(label=_("Tag"), required=False, max_length=Tag.NAME_MAX_LENGTH)


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["thumb", "__str__", "status", "hidden", "uploaded_at", "embedded_at", "embedding_model"]
    list_display_links = ["thumb", "__str__"]
    list_filter = ["status", "hidden", "embedding_model", "uploaded_at", "tags"]
    search_fields = ["title", "description", "=sha256", "tags__name"]
    actions = ["hide", "unhide", "reembed", "reindex_now", "add_tag", "remove_tag"]
    readonly_fields = [
        "preview", "width", "height", "size_bytes", "sha256", "uploaded_at",
        "status", "error", "embedding_model", "embedded_at", "file", "thumbnail",
    ]
    fields = ["preview", "title", "description", "tags", "hidden", *readonly_fields[1:]]
    autocomplete_fields = ["tags"]
    action_form = TagActionForm

    @admin.display(description=_("thumbnail"))
    def thumb(self, obj):
        return format_html('<img src="{}" alt="" style="height:4rem;width:4rem;object-fit:cover">', obj.thumbnail.url)

    @admin.display(description=_("preview"))
    def preview(self, obj):
        return format_html('<img src="{}" alt="" style="max-height:20rem">', obj.thumbnail.url)

    def get_queryset(self, request):
        """The images this user may open, as on the pages and the API (``gallery.catalogue.access``):
        hidden ones only for curators, whatever the admin's view permission says."""
        return access.viewable_images(request.user)

    def get_list_filter(self, request):
        return self.list_filter if access.can_curate(request.user) else [f for f in self.list_filter if f != "hidden"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ImageAddForm
            kwargs["fields"] = ["upload", "title", "description", "tags"]
        form = super().get_form(request, obj, **kwargs)
        form.user = request.user  # a class made for this request by modelform_factory
        return form

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["upload", "title", "description", "tags"]
        return without_error_unless_curator(request, self.fields)

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def save_form(self, request, form, change):
        if change:
            return super().save_form(request, form, change)
        return form.image  # already stored by the upload service while the form was cleaned

    def log_addition(self, request, obj, message):
        if getattr(obj, "created_now", True):  # the same bytes again added nothing
            super().log_addition(request, obj, message)

    def response_add(self, request, obj, post_url_continue=None):
        if getattr(obj, "created_now", True):
            return super().response_add(request, obj, post_url_continue)
        messages.info(request, _("This photo was already in the gallery; showing the existing one."))
        return redirect("admin:gallery_image_change", obj.pk)

    def save_model(self, request, obj, form, change):
        if change:
            curation.image_update(
                image=Image.objects.get(pk=obj.pk), title=obj.title, description=obj.description, hidden=obj.hidden
            )

    def save_related(self, request, form, formsets, change):
        """Tags go through the tags service (which keeps the full-text rows in step), not the form's save_m2m."""
        if change and "tags" in form.cleaned_data:
            tags.tags_set(image=form.instance, names=[tag.name for tag in form.cleaned_data["tags"]])
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request, obj):
        curation.image_delete(image=obj)

    def delete_queryset(self, request, queryset):
        for image in queryset:
            curation.image_delete(image=image)

    def has_reindex_permission(self, request):
        return access.can_reindex(request.user)

    @admin.action(description=_("Hide selected images from the gallery and search"), permissions=["change"])
    def hide(self, request, queryset):
        count = curation.images_set_hidden(images=queryset, hidden=True)
        self.message_user(request, _("%d images hidden.") % count)

    @admin.action(description=_("Unhide selected images"), permissions=["change"])
    def unhide(self, request, queryset):
        count = curation.images_set_hidden(images=queryset, hidden=False)
        self.message_user(request, _("%d images visible again.") % count)

    @admin.action(description=_("Re-embed selected images at the next index run"), permissions=["change"])
    def reembed(self, request, queryset):
        count = curation.images_reembed(images=queryset)
        self.message_user(request, _("%d images queued for embedding.") % count)

    @admin.action(description=_("Add the tag below to selected images"), permissions=["change"])
    def add_tag(self, request, queryset):
        self._tag_action(request, queryset, tags.images_tag, _("Tag added to %d images."))

    @admin.action(description=_("Remove the tag below from selected images"), permissions=["change"])
    def remove_tag(self, request, queryset):
        self._tag_action(request, queryset, tags.images_untag, _("Tag removed from %d images."))

    def _tag_action(self, request, queryset, change, done):
        """Tag or untag with the name typed in the action bar; a bad name is said, not raised."""
        try:
            count = change(images=queryset, name=request.POST.get("tag", ""))
        except GalleryError as exc:
            return self.message_user(request, str(exc), messages.ERROR)
        self.message_user(request, done % count)

    @admin.action(description=_("Reindex now (embed pending images and publish)"), permissions=["reindex"])
    def reindex_now(self, request, queryset):
        try:
            self.message_user(request, indexing.index_refresh_now(), messages.SUCCESS)
        except GalleryError as exc:
            self.message_user(request, str(exc), messages.ERROR)


class TagForm(forms.ModelForm):
    class Meta:
        model = Tag
        fields = ["name"]

    def clean_name(self):
        try:
            name = tags.tag_name_clean(self.cleaned_data["name"])
        except GalleryError as exc:
            raise forms.ValidationError(str(exc)) from None
        same = tags.tag_lookup(name)
        if not name or (same is not None and same.pk != self.instance.pk):
            raise forms.ValidationError(_("Give a name no other tag has."))
        return name


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    """Tags through the tags service: a rename or delete rewrites the full-text rows of the
    images that carry the tag."""

    form = TagForm
    list_display = ["name", "slug", "image_count"]
    search_fields = ["name", "slug"]  # for ImageAdmin's autocomplete
    fields = ["name", "slug"]
    readonly_fields = ["slug"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(image_count=Count("images")).order_by("name")

    @admin.display(description=_("images"), ordering="image_count")
    def image_count(self, obj):
        return obj.image_count

    def save_model(self, request, obj, form, change):
        if change:
            tags.tag_rename(tag=Tag.objects.get(pk=obj.pk), name=obj.name)
        else:
            created = tags.tags_get_or_create(tags.tag_names_parse([obj.name]))[0]
            obj.pk, obj.name, obj.slug = created.pk, created.name, created.slug

    def delete_model(self, request, obj):
        tags.tag_delete(tag=obj)

    def delete_queryset(self, request, queryset):
        for tag in queryset:
            tags.tag_delete(tag=tag)
