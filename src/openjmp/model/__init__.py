"""openjmp.model."""
