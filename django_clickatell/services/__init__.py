"""Domain operations on messages: request and carry out cancellations, record what Clickatell said.

The admin, the Celery tasks and the management commands all call these
functions; none of them touches message state on its own.  Services know the
gateway's backend interface (``gateway.backends``, never a particular API's
client) and the models, but nothing of the admin or of Celery.
"""
