"""The embedded demo: seed data and the commands that start the whole application locally.

Installed only in embedded/demo mode (settings.PROFILEOPS_DEMO, on by default while DEBUG is on);
a production install never loads it.
"""
