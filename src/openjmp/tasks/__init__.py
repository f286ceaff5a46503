"""openjmp.tasks."""
