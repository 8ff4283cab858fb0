"""Indexing in the admin: index versions, golden queries and refused builds (the recall gate), near-duplicate groups, what OCR read."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from gallery.admin.permissions import CuratorsOnly, without_error_unless_curator
from gallery.catalogue import access
from gallery.engine import embedder
from gallery.errors import GalleryError
from gallery.indexing import duplicates
from gallery.models import DuplicateGroup, GoldenQuery, Image, ImageText, IndexVersion, RefusedBuild


@admin.register(IndexVersion)
class IndexVersionAdmin(admin.ModelAdmin):
    list_display = [
        "version", "is_current", "backend", "model", "item_count", "embedded_count", "embed_seconds", "build_seconds", "created_at",
    ]
    list_filter = ["is_current", "backend", "model"]

    def changelist_view(self, request, extra_context=None):
        # Which runtime encodes queries on this host, and the figures behind CLIP_RUNTIME=auto.
        messages.info(request, embedder.runtime_summary())
        show_refusals(request)
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- Curator pins and golden queries: curators (gallery.change_image) keep them --------------


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
    """Builds the recall gate refused (gallery.indexing.recall_gate): read only."""

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


@admin.register(DuplicateGroup)
class DuplicateGroupAdmin(admin.ModelAdmin):
    """Groups of near-duplicates found after embedding. Each member's "Keep this one" hides the
    other members and resolves the group (``gallery.indexing.duplicates.duplicates_keep``)."""

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


@admin.register(ImageText)
class ImageTextAdmin(admin.ModelAdmin):
    """What OCR read (gallery.indexing.ocr): to look at, never to edit; `manage.py read_text` writes it."""

    list_display = ["image", "engine", "line_count", "confidence", "seconds", "read_at", "error"]
    list_filter = ["engine"]
    search_fields = ["image__ocr_text", "error"]
    readonly_fields = ["image", "lines", "confidence", "engine", "source", "seconds", "error", "read_at"]
    list_select_related = ["image"]

    @admin.display(description=_("lines"))
    def line_count(self, obj):
        return len(obj.lines)

    def get_queryset(self, request):
        """The text of the images this user may open (``gallery.catalogue.access``): what a hidden image
        says is hidden with it."""
        # (the image's vector is never shown: not read for each row)
        return super().get_queryset(request).filter(image__in=access.viewable_images(request.user)).defer("image__embedding")

    def get_list_display(self, request):
        return without_error_unless_curator(request, self.list_display)

    def get_search_fields(self, request):
        return without_error_unless_curator(request, self.search_fields)

    def get_fields(self, request, obj=None):
        return without_error_unless_curator(request, self.readonly_fields)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
