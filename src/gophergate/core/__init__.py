"""The types every layer shares, with no dependency on any other package of the gateway: usage and cost, the
per-call objects a provider works with (``calls.py``), the request record, errors, secret redaction, ASGI
aliases and the bounded TTL store. Packages import downwards only (``tests/unit/test_layers.py``)."""
