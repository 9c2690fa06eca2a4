"""Stop scheduled SMS at Clickatell from the Django admin and Celery; keep the record straight."""

__version__ = "0.1.0"
