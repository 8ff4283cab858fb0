from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from gallery.catalogue.tags import tag_names_parse
from gallery.errors import GalleryError
from gallery.models import MAX_QUERY_LENGTH, Image

DEFAULT_BALANCE = 50  # percent of the query that is the image, on the search page's slider


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files from one input (Django's documented pattern); each is checked by the
    upload service, for every way in, not only this form."""

    widget = MultipleFileInput

    def clean(self, data, initial=None):
        files = [super(MultipleFileField, self).clean(item, initial) for item in (data or []) if item]
        if not files:
            raise forms.ValidationError(_("Choose at least one photo."))
        if len(files) > settings.UPLOAD_MAX_FILES:
            raise forms.ValidationError(
                _("Upload at most %(n)d photos at once.") % {"n": settings.UPLOAD_MAX_FILES}
            )
        return files


class UploadForm(forms.Form):
    files = MultipleFileField(label=_("Photos"), widget=MultipleFileInput(attrs={"accept": "image/*"}))
    title = forms.CharField(
        label=_("Title"),
        max_length=Image.TITLE_MAX_LENGTH,
        required=False,
        help_text=_("for a single photo; by default its file name"),
        widget=forms.TextInput(attrs={"class": "form-control"}),
    )
    description = forms.CharField(
        label=_("Description"),
        max_length=Image.DESCRIPTION_MAX_LENGTH,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "class": "form-control"}),
    )
    tags = forms.CharField(
        label=_("Tags"),
        required=False,
        max_length=2000,
        help_text=_("comma-separated, for every photo of this upload; later only curators change them"),
        widget=forms.TextInput(attrs={"class": "form-control", "autocomplete": "off"}),
    )

    def clean_tags(self):
        """Checked here for the page's error beside the field; the upload service checks again."""
        try:
            return tag_names_parse(self.cleaned_data["tags"])
        except GalleryError as exc:
            raise forms.ValidationError(str(exc)) from None


class ImageSearchForm(forms.Form):
    """Search by an example image, optionally mixed with text and a negative text."""

    file = forms.FileField(label=_("Example image"), required=False)
    q = forms.CharField(label=_("Text"), max_length=MAX_QUERY_LENGTH, required=False)
    balance = forms.IntegerField(
        label=_("Image weight"), min_value=0, max_value=100, initial=DEFAULT_BALANCE, required=False
    )
    negative = forms.CharField(label=_("But not"), max_length=MAX_QUERY_LENGTH, required=False)

    def query_arguments(self) -> dict:
        """The slider's share of the image becomes the query's two weights."""
        data = self.cleaned_data
        share = (DEFAULT_BALANCE if data["balance"] is None else data["balance"]) / 100
        return {
            "text": data["q"] or "",
            "image_file": data["file"],
            "text_weight": 1 - share,
            "image_weight": share,
            "negative_text": data["negative"] or "",
        }
