"""Gunicorn defaults for the sample backend, read from the working directory.

``gunicorn littlelemon.wsgi -b 127.0.0.1:8001`` run from this folder picks it
up. Names gunicorn does not know are ignored, so older releases run it too.
"""

# Two instances run side by side on one machine; gunicorn >= 27 would give both
# the same control socket (~/.gunicorn/gunicorn.ctl) and the second would fail.
control_socket_disable = True

# The gateway in front logs every request; the backends only log errors.
accesslog = None
errorlog = "-"
loglevel = "info"

# Shut down quickly on SIGTERM: the demo and the tests stop instances often.
graceful_timeout = 5
