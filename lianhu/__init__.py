"""The shared kit: event contracts, topology, bus (publisher, outbox relay), config, db, auth tokens.

Nothing here knows about a particular service; services plug into the kit, never the other way round.
"""
