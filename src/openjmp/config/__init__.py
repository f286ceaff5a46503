"""openjmp.config."""
