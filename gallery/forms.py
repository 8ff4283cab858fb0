from django import forms
from django.utils.translation import gettext_lazy as _

from gallery.search import MAX_QUERY_LENGTH


class UploadForm(forms.Form):
    """Title and description; the files come from ``request.FILES.getlist("files")`` and the
    upload service validates each (for every way in, not only this form)."""

    title = forms.CharField(
        label=_("Title"),
        max_length=200,
        required=False,
        help_text=_("for a single photo; by default its file name"),
        widget=forms.TextInput(attrs={"class": "form-control"}),
    )
    description = forms.CharField(
        label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 3, "class": "form-control"})
    )


class ImageSearchForm(forms.Form):
    """Search by an example image, optionally mixed with text and a negative text."""

    file = forms.FileField(label=_("Example image"), required=False)
    q = forms.CharField(label=_("Text"), max_length=MAX_QUERY_LENGTH, required=False)
    balance = forms.IntegerField(label=_("Image weight"), min_value=0, max_value=100, initial=50, required=False)
    negative = forms.CharField(label=_("But not"), max_length=MAX_QUERY_LENGTH, required=False)

    def clean(self):
        data = super().clean()
        if not data.get("file") and not (data.get("q") or "").strip():
            raise forms.ValidationError(_("Give an example image, a text, or both."))
        return data

