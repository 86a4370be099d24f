from lianhu.plugins import ServicePlugin

# Nothing durable to migrate or seed: speech only reads blobs and emits events.
plugin = ServicePlugin(name="speech")
