"""Project package of the Little Lemon sample backend (settings, URLs, WSGI)."""
