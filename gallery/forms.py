from django import forms
from django.utils.translation import gettext_lazy as _

from gallery.search import MAX_QUERY_LENGTH


class UploadForm(forms.Form):
    # A plain FileField: the upload service does all image validation, for every way in.
    file = forms.FileField(label=_("Photo"), widget=forms.ClearableFileInput(attrs={"accept": "image/*"}))
    title = forms.CharField(label=_("Title"), max_length=200, required=False)
    description = forms.CharField(label=_("Description"), widget=forms.Textarea(attrs={"rows": 3}), required=False)


class ImageSearchForm(forms.Form):
    file = forms.FileField(label=_("Search by image"), widget=forms.ClearableFileInput(attrs={"accept": "image/*"}))


class TextSearchForm(forms.Form):
    q = forms.CharField(label=_("Search"), max_length=MAX_QUERY_LENGTH, required=False)
