"""Search in the admin: curator pins."""

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from gallery.admin.permissions import CuratorsOnly
from gallery.errors import GalleryError
from gallery.models import PinnedImage, QueryPin
from gallery.search import pins


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
