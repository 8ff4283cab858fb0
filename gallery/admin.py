from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from gallery import access, clip, curation, duplicates, indexing, pins, tags, uploads
from gallery.errors import GalleryError
from gallery.models import DuplicateGroup, GoldenQuery, Image, ImageText, IndexVersion, PinnedImage, QueryPin, RefusedBuild, Tag
from indexer.embedding import ModelLoadError


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
        """The images this user may open, as on the pages and the API (``gallery.access``):
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
        # Why an image failed (paths, exceptions) is for curators only, as on the pages.
        return self.fields if access.can_curate(request.user) else [f for f in self.fields if f != "error"]

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
        except (GalleryError, ModelLoadError) as exc:
            self.message_user(request, str(exc), messages.ERROR)


@admin.register(IndexVersion)
class IndexVersionAdmin(admin.ModelAdmin):
    list_display = [
        "version", "is_current", "backend", "model", "item_count", "embedded_count", "embed_seconds", "build_seconds", "created_at",
    ]
    list_filter = ["is_current", "backend", "model"]

    def changelist_view(self, request, extra_context=None):
        # Which runtime encodes queries on this host, and the figures behind CLIP_RUNTIME=auto.
        messages.info(request, clip.runtime_summary())
        show_refusals(request)
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- Curator pins and golden queries: curators (gallery.change_image) keep them --------------


class CuratorsOnly:
    """Curators see and change these, whatever model permissions exist for the rows themselves."""

    def has_view_permission(self, request, obj=None):
        return access.can_curate(request.user)

    def has_add_permission(self, request, obj=None):
        return access.can_curate(request.user)

    def has_change_permission(self, request, obj=None):
        return access.can_curate(request.user)

    def has_delete_permission(self, request, obj=None):
        return access.can_curate(request.user)


class QueryPinForm(forms.ModelForm):
    class Meta:
        model = QueryPin
        fields = ["query", "excluded"]

    def clean_query(self):
        try:
            return pins.clean_query(self.cleaned_data["query"])
        except GalleryError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        data = super().clean()
        # The pinned images are in the inline formset, validated after this form: it reads this.
        self.instance.excluded_choice = {image.pk for image in data.get("excluded") or []}
        return data


class PinnedImageFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        chosen = [
            form.cleaned_data["image"].pk
            for form in self.forms
            if form.cleaned_data.get("image") and not form.cleaned_data.get("DELETE")
        ]
        try:
            pins.check_lists(chosen, getattr(self.instance, "excluded_choice", set()))
        except GalleryError as exc:
            raise forms.ValidationError(str(exc)) from None


class PinnedImageInline(CuratorsOnly, admin.TabularInline):
    model = PinnedImage
    formset = PinnedImageFormSet
    fields = ["image", "position"]
    autocomplete_fields = ["image"]
    extra = 1


@admin.register(QueryPin)
class QueryPinAdmin(CuratorsOnly, admin.ModelAdmin):
    form = QueryPinForm
    inlines = [PinnedImageInline]
    list_display = ["query", "pinned_count", "excluded_count", "created_by", "created_at", "updated_at"]
    search_fields = ["query"]
    autocomplete_fields = ["excluded"]
    readonly_fields = ["created_by", "created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by")

    @admin.display(description=_("pinned"))
    def pinned_count(self, obj):
        return obj.placements.count()

    @admin.display(description=_("excluded"))
    def excluded_count(self, obj):
        return obj.excluded.count()

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(GoldenQuery)
class GoldenQueryAdmin(CuratorsOnly, admin.ModelAdmin):
    list_display = ["text", "k", "expected_count", "created_by", "updated_at"]
    search_fields = ["text"]
    autocomplete_fields = ["expected"]
    readonly_fields = ["created_by", "created_at", "updated_at"]

    @admin.display(description=_("expected images"))
    def expected_count(self, obj):
        return obj.expected.count()

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(RefusedBuild)
class RefusedBuildAdmin(admin.ModelAdmin):
    """Builds the recall gate refused (gallery.recall_gate): read only."""

    list_display = [
        "version", "created_at", "reason", "structural_recall", "sample_size", "golden_before", "golden_after",
        "current_version", "item_count", "model",
    ]
    list_filter = ["model"]

    def has_view_permission(self, request, obj=None):
        return access.can_curate(request.user) or super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DuplicateGroup)
class DuplicateGroupAdmin(admin.ModelAdmin):
    """Groups of near-duplicates found after embedding. Each member's "Keep this one" hides the
    other members and resolves the group (``gallery.duplicates.duplicates_keep``)."""

    list_display = ["__str__", "member_thumbnails", "created_at", "resolved"]
    list_filter = ["resolved", "created_at"]
    actions = ["keep_oldest"]
    readonly_fields = ["member_thumbnails", "created_at", "resolved", "kept", "resolved_at"]
    fields = readonly_fields

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("members")

    def get_urls(self):
        keep = path(
            "<int:group_id>/keep/",
            self.admin_site.admin_view(self.keep_view),
            name="gallery_duplicategroup_keep",
        )
        return [keep, *super().get_urls()]

    @admin.display(description=_("images"))
    def member_thumbnails(self, obj):
        # The buttons submit the changelist's own form (and its CSRF token) to the keep view:
        # forms cannot nest, and `formaction` sends the button's value with it.
        url = reverse("admin:gallery_duplicategroup_keep", args=[obj.pk])
        cells = format_html_join(
            "",
            '<figure style="display:inline-block;margin:0 .5rem .5rem 0;text-align:center">'
            '<a href="{}"><img src="{}" alt="" style="height:6rem;width:6rem;object-fit:cover"></a>'
            "<figcaption>{} · {}×{}{}</figcaption>{}</figure>",
            (
                (
                    reverse("admin:gallery_image_change", args=[image.pk]),
                    image.thumbnail.url,
                    image,
                    image.width,
                    image.height,
                    _(" (hidden)") if image.hidden else "",
                    ""
                    if obj.resolved
                    else format_html(
                        '<br><button type="submit" class="button" formaction="{}" name="keep" value="{}">{}</button>',
                        url, image.pk, _("Keep this one, hide the others"),
                    ),
                )
                for image in obj.members.all()
            ),
        )
        return cells

    def keep_view(self, request, group_id):
        if request.method != "POST" or not access.can_curate(request.user):
            raise PermissionDenied
        group = get_object_or_404(DuplicateGroup, pk=group_id)
        image = get_object_or_404(Image, pk=request.POST.get("keep") or 0)
        try:
            hidden = duplicates.duplicates_keep(group=group, image=image)
        except GalleryError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, _("Kept “%(image)s”; %(count)d other images hidden.") % {"image": image, "count": hidden})
        return redirect("admin:gallery_duplicategroup_changelist")

    @admin.action(description=_("Keep the oldest image of each selected group, hide the others"), permissions=["change"])
    def keep_oldest(self, request, queryset):
        hidden = 0
        for group in queryset.filter(resolved=False):
            oldest = group.members.order_by("uploaded_at", "pk").first()
            if oldest is not None:
                hidden += duplicates.duplicates_keep(group=group, image=oldest)
        self.message_user(request, _("%d images hidden.") % hidden)

    def has_add_permission(self, request):
        return False

    def has_view_permission(self, request, obj=None):
        return access.can_curate(request.user)  # the images' curators, not a permission of its own

    def has_change_permission(self, request, obj=None):
        return access.can_curate(request.user)

    def has_module_permission(self, request):
        return super().has_module_permission(request) or access.can_curate(request.user)


def show_refusals(request) -> None:
    """On the index-version list: every build refused since the current version was published."""
    current = IndexVersion.objects.current()
    refused = RefusedBuild.objects.all()
    if current is not None:
        refused = refused.filter(created_at__gt=current.created_at)
    for build in refused[:5]:
        messages.warning(
            request,
            _("Build %(version)s was refused by the recall gate at %(when)s: %(reason)s "
              "Version %(current)s keeps serving. All refusals: %(url)s")
            % {
                "version": build.version,
                "when": build.created_at.strftime("%Y-%m-%d %H:%M"),
                "reason": build.reason,
                "current": build.current_version or "(none)",
                "url": reverse("admin:gallery_refusedbuild_changelist"),
            },
        )


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


@admin.register(ImageText)
class ImageTextAdmin(admin.ModelAdmin):
    """What OCR read (gallery.ocr): to look at, never to edit; `manage.py read_text` writes it."""

    list_display = ["image", "engine", "line_count", "confidence", "seconds", "read_at", "error"]
    list_filter = ["engine"]
    search_fields = ["image__ocr_text", "error"]
    readonly_fields = ["image", "lines", "confidence", "engine", "source", "seconds", "error", "read_at"]
    list_select_related = ["image"]

    @admin.display(description=_("lines"))
    def line_count(self, obj):
        return len(obj.lines)

    def get_queryset(self, request):
        """The text of the images this user may open (``gallery.access``): what a hidden image
        says is hidden with it."""
        # (the image's vector is never shown: not read for each row)
        return super().get_queryset(request).filter(image__in=access.viewable_images(request.user)).defer("image__embedding")

    def get_list_display(self, request):
        # Why reading failed (paths, exceptions) is for curators only, as for embedding.
        return self.list_display if access.can_curate(request.user) else [f for f in self.list_display if f != "error"]

    def get_search_fields(self, request):
        return self.search_fields if access.can_curate(request.user) else [f for f in self.search_fields if f != "error"]

    def get_fields(self, request, obj=None):
        return self.readonly_fields if access.can_curate(request.user) else [f for f in self.readonly_fields if f != "error"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
