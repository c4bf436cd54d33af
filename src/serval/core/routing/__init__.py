"""Routing: which version answers a request. ``TrafficPolicy.choose(request, snapshot)`` picks
from the versions available now; the lifecycle manager then leases the choice."""
