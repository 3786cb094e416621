"""What several processes and instances share through Redis (``GOPHERGATE_REDIS_URL``): the bus that carries the
live hub and pushed changes, and the shared memories."""
