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
