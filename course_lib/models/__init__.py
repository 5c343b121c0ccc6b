"""course_lib.models."""
