"""Tokens for programs, with a lifetime (API_TOKEN_LIFETIME_DAYS; README, "Security")."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication


def token_expires_at(token):
    return token.created + timedelta(days=settings.API_TOKEN_LIFETIME_DAYS)


class ExpiringTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_expires_at(token) <= timezone.now():
            raise exceptions.AuthenticationFailed("The token has expired; ask for a new one.")
        return user, token


class TokensEndWithPassword:
    """A password "validator" that validates nothing: Django calls ``password_changed`` on every
    configured validator once a new password is saved, whichever way it was set (the password
    page, an admin's reset, ``manage.py changepassword``), and a token made with the old password
    must not outlive it (sessions already end: Django checks their password hash)."""

    def validate(self, password, user=None):
        return None

    def password_changed(self, password, user=None):
        from rest_framework.authtoken.models import Token

        if user is not None and user.pk is not None:
            Token.objects.filter(user=user).delete()

    def get_help_text(self):
        return "Changing your password ends your API tokens."


def media_user(request):
    """Who asks for a media file: the API token's user when the request carries one (the API
    hands programs these URLs), else the session's. Raises ``AuthenticationFailed`` for a
    token that is unknown or expired, as the API does."""
    found = ExpiringTokenAuthentication().authenticate(request)
    return found[0] if found else request.user
