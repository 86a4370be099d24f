"""The registry service: org tree, people, positions, households and members (the base database)."""
