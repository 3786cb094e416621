"""The live hub behind ``/ws``: request events, metrics every 2 s and system events for the dashboard."""

from gophergate.hub.events import EventKind
from gophergate.hub.hub import Connection, Hub, HubUser
from gophergate.hub.sampler import Sampler
from gophergate.hub.ws import Authenticate, HubEndpoint

__all__ = ["Authenticate", "Connection", "EventKind", "Hub", "HubEndpoint", "HubUser", "Sampler"]
