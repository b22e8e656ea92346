from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard import tokens
from dashboard.api.main import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/api-tokens/", tokens.api_tokens, name="api-tokens"),
    path("account/api-tokens/<int:token_id>/revoke/", tokens.revoke_api_token, name="api-token-revoke"),
    # The documented REST API (/api/v1/..., /api/docs/) and the gateways' ingest endpoints.
    path("api/", api.urls),
    path("api/v1/", include("metering.urls")),
    path("", include("dashboard.urls")),
]
