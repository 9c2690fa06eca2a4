"""Include in your URLconf: ``path("clickatell/", include("django_clickatell.urls"))``.

The callback URL to set in the Clickatell account is then
``https://<your host>/clickatell/callback/`` for every legacy account (HTTP API,
REST API: the ``api_id`` of each callback says whose it is), or for a One API
account ``https://<your host>/clickatell/one-api/<account>/<CALLBACK_SECRET>/``.

Any other path under ``callback/`` or ``one-api/`` -- a mistyped secret, one too
long, one with a ``/`` -- answers a bare 404 that Django neither logs nor renders
as a DEBUG page: the path may carry a secret.
"""

from django.urls import path, re_path

from .views import callback_not_found, one_api_callback, status_callback

app_name = "django_clickatell"

urlpatterns = [
    # Trailing slashes optional: a redirect would drop the POST (and log the path).
    path("callback/", status_callback, name="status-callback"),
    re_path(r"^callback$", status_callback),
    re_path(
        r"^one-api/(?P<account>[A-Za-z0-9_-]{1,64})/(?P<secret>[^/]{1,256})/?$",
        one_api_callback,
        name="one-api-callback",
    ),
    re_path(r"^(?:callback|one-api)(?:/|$)", callback_not_found),
]
