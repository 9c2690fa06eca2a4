"""Include in your URLconf: ``path("clickatell/", include("django_clickatell.urls"))``.

The callback URL to set in the Clickatell account is then
``https://<your host>/clickatell/callback/``.
"""

from django.urls import path

from .views import status_callback

app_name = "django_clickatell"

urlpatterns = [path("callback/", status_callback, name="status-callback")]
