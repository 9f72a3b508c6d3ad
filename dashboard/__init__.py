"""The live health dashboard: one page for staff, refreshed from one JSON document.

``overview.py`` gathers what the page shows from the apps that own it (metrics, routing, alerts,
cache, pools); ``views.py`` serves the page and that document; the browser draws it
(``static/dashboard/``).
"""
