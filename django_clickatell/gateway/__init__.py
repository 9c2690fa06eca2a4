"""Talking to Clickatell: the typed client, the cache-backed session and HTTP transport.

``client`` (one method per command) uses ``session`` (one shared session id per
set of credentials; ``sealing`` and ``failure_memory`` say what the cache holds)
and ``transport`` (POSTs within the ``deadline``).  Knows nothing of the
package's models; the domain services build on it.
"""
