"""Include in your URLconf: ``path("clickatell/", include("django_clickatell.urls"))``.

The callback URL to set in the Clickatell account is then
``https://<your host>/clickatell/callback/`` (legacy HTTP API), or for a One API
account ``https://<your host>/clickatell/one-api/<account>/<CALLBACK_SECRET>/``.
"""

from django.urls import path, re_path

from .views import one_api_callback, status_callback

app_name = "django_clickatell"

urlpatterns = [
    path("callback/", status_callback, name="status-callback"),
    # Trailing slash optional: a redirect would drop the POST (and log the path).
    re_path(
        r"^one-api/(?P<account>[A-Za-z0-9_-]{1,64})/(?P<secret>[^/]{1,256})/?$",
        one_api_callback,
        name="one-api-callback",
    ),
]
