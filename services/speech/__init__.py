"""speech: turns the recording of a voice report into text, per language, off the event loop."""
