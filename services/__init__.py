"""Atelier's services. Each owns its database and talks to the others only through protos/ and events."""
