"""pytest plugin for the nameko integration tests: eventlet's monkey patch, before anything imports
``socket``. Loaded with ``python -m pytest -p tests.support.green tests/integration`` (``make test``
does); the rest of the suite runs unpatched, as the gateway does."""

import warnings

with warnings.catch_warnings():
    # eventlet announces its own deprecation on import; nameko 2 needs it all the same.
    warnings.simplefilter("ignore")
    import eventlet

eventlet.monkey_patch()
