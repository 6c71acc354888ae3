"""WSGI entry point: ``gunicorn littlelemon.wsgi -b 127.0.0.1:8001``."""
from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "littlelemon.settings")

application = get_wsgi_application()
