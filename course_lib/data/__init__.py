"""course_lib.data."""
